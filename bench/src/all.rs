//! Every figure of docs/performance.md, one scenario after another. Each line printed
//! before a table is the exact command that produces it on its own.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of each HTTP run.
    #[arg(long, default_value_t = 30)]
    duration: u64,
    /// Directory of the release binaries (the shim runs as a child process from here).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Starts per binary in the cold-start table.
    #[arg(long, default_value_t = 10)]
    runs: usize,
}

/// The scenario command lines behind the document (without `--bin-dir`).
pub fn lines(args: &Args) -> Vec<Vec<String>> {
    let d = args.duration.to_string();
    let d = d.as_str();
    let runs = args.runs.to_string();
    let runs = runs.as_str();
    [
        vec!["http", "--duration", d],
        vec!["http", "--mix", "list=1", "--duration", d],
        vec!["http", "--mix", "get=1", "--duration", d],
        vec!["http", "--mix", "create=1", "--duration", d],
        vec!["ws-fanout", "--subscribers", "100,1000"],
        vec!["ws-sharded"],
        vec!["webhooks"],
        vec!["cold-start", "--runs", runs],
    ]
    .into_iter()
    .map(|l| l.into_iter().map(str::to_owned).collect())
    .collect()
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    crate::server::binary(&args.bin_dir, "local")?;
    for mut line in lines(&args) {
        line.extend(["--bin-dir".to_owned(), args.bin_dir.display().to_string()]);
        println!("\n$ target/release/bench {}", line.join(" "));
        crate::run_line(&line).await?;
    }
    Ok(())
}
