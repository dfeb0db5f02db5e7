//! Where a scenario's shim runs: a child process (the built `local` binary, so its memory
//! is measured alone), in this process, or an already running server given by URL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options shared by the scenarios that talk to a shim.
#[derive(clap::Args, Clone, Debug)]
pub struct ServerArgs {
    /// `child` (spawn `<bin-dir>/local` on a free port), `in-process` (serve from the bench
    /// process: RSS then includes the load generator), or the base URL of a running shim.
    #[arg(long, default_value = "child")]
    pub server: String,
    /// Store of a child shim: `memory` (the memory store, `storage/memory.rs`) or
    /// `embedded` (a SQLite file in a fresh temporary directory). The in-process shim always
    /// uses memory.
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// Directory of the release binaries (`cargo build --release --bins` or
    /// `cargo build --profile bench --bins` put them in target/release).
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
}

/// A running shim; a child is killed when this is dropped.
pub struct Shim {
    pub base: String,
    /// Process to read memory of (`None`: unknown, an external server).
    pub pid: Option<u32>,
    pub kind: &'static str,
    child: Option<ChildGuard>,
    _state: Option<momentum_shared::AppState>,
}

impl Shim {
    pub async fn start(args: &ServerArgs) -> anyhow::Result<Self> {
        match args.server.as_str() {
            "child" => {
                let bin = binary(&args.bin_dir, "local")?;
                let (base, child) = spawn_local(&bin, &args.store).await?;
                Ok(Self {
                    base,
                    pid: Some(child.0.id()),
                    kind: "child process",
                    child: Some(child),
                    _state: None,
                })
            }
            "in-process" => {
                let (base, state) = crate::start_shim().await?;
                Ok(Self {
                    base,
                    pid: Some(std::process::id()),
                    kind: "in-process",
                    child: None,
                    _state: Some(state),
                })
            }
            url if url.starts_with("http://") => Ok(Self {
                base: url.trim_end_matches('/').to_owned(),
                pid: None,
                kind: "external",
                child: None,
                _state: None,
            }),
            other => anyhow::bail!("--server {other:?}: use child, in-process or http://host:port"),
        }
    }

    /// Memory of the server process, if known.
    pub fn memory(&self) -> Option<Memory> {
        self.pid.map(Memory::of)
    }

    /// CPU time (user + system) a child shim has used so far; `None` for a server whose
    /// process is not the shim's alone (in-process, external).
    pub fn cpu_time(&self) -> Option<Duration> {
        self.child.as_ref()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid?)).ok()?;
        // The fields after the command name (in parentheses, possibly with spaces): state
        // is field 3, utime and stime are fields 14 and 15 (proc(5)), in clock ticks.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf reads a constant of the running system.
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (per_sec > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_sec as f64))
    }

    /// The child's stderr so far (for error reports).
    pub fn log_tail(&self) -> String {
        self.child
            .as_ref()
            .map(ChildGuard::log_tail)
            .unwrap_or_default()
    }
}

/// Kills and reaps the child on drop.
pub struct ChildGuard(pub Child, pub Option<PathBuf>);

impl ChildGuard {
    pub fn log_tail(&self) -> String {
        let Some(path) = &self.1 else {
            return String::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text[text.floor_char_boundary(start)..].to_owned()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(dir) = self.1.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Self {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// A release binary, or an error saying how to build it.
pub fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        anyhow::bail!(
            "{} not found: build the binaries first with `cargo build --release --bins` \
             (or `cargo build --profile bench --bins`), or pass --bin-dir",
            path.display()
        )
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A fresh temporary directory for one child's log (and data).
pub fn temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "momentum-bench-{prefix}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The shim's command line on a free port, quiet (warnings only), exposing storage calls.
pub fn local_command(bin: &Path, store: &str, port: u16, dir: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(bin);
    cmd.args(["--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--store", store])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MOMENTUM_ENV", "local")
        .env("MOMENTUM_EXPOSE_STORAGE_CALLS", "true")
        // The load generator logs in hundreds of times a second from one address and as a
        // handful of users: the login limits would answer 429 (tests/tests/limits.rs
        // covers them); the benchmark measures the work behind them.
        .env("MOMENTUM_RATE_LIMIT_AUTH_IP", "off")
        .env("MOMENTUM_RATE_LIMIT_AUTH_USER", "off")
        // ws-fanout opens thousands of sockets from one address.
        .env("MOMENTUM_RATE_LIMIT_WS_CONNECT", "off")
        // The webhooks scenario's receiver listens on 127.0.0.1 (local mode only).
        .env("MOMENTUM_WEBHOOKS_ALLOW_PRIVATE", "1")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?);
    if store == "embedded" {
        cmd.arg("--data-dir").arg(dir.join("data"));
    }
    Ok(cmd)
}

/// Spawns the shim and waits until `/health` answers 200.
async fn spawn_local(bin: &Path, store: &str) -> anyhow::Result<(String, ChildGuard)> {
    let dir = temp_dir("shim")?;
    let port = free_port()?;
    let child = local_command(bin, store, port, &dir)?.spawn()?;
    let mut guard = ChildGuard(child, Some(dir.join("stderr.log")));
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut guard, Duration::from_secs(20)).await?;
    Ok((base, guard))
}

/// Polls `<base>/health` every millisecond until 200; fails if the child exits or on timeout.
pub async fn wait_healthy(
    base: &str,
    child: &mut ChildGuard,
    timeout: Duration,
) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Some(status) = child.0.try_wait()? {
            anyhow::bail!(
                "shim exited ({status}) before serving:\n{}",
                child.log_tail()
            );
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "shim did not answer /health within {timeout:?}:\n{}",
                child.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
