//! The `local` binary on SIGTERM and on Ctrl-C (SIGINT): a request in flight is answered,
//! the process exits with status 0, and the embedded store is flushed (its write-ahead log
//! checkpointed to empty). Synchronised on what the server says (its log lines, its
//! `100 Continue`), never on sleeps.

#![cfg(unix)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound on waiting for something the binary must do; only reached when it does not.
const SAFETY: Duration = Duration::from_secs(30);

struct Shim {
    child: Child,
    logs: mpsc::Receiver<Value>,
    data_dir: PathBuf,
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Shim {
    fn start() -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("momentum-signals-{}", uuid::Uuid::new_v4()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_local"))
            .args([
                "--port",
                "0",
                "--store",
                "embedded",
                "--log-json",
                "--data-dir",
            ])
            .arg(&data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the local binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        Self {
            child,
            logs,
            data_dir,
        }
    }

    /// Waits for the log line whose message is `message`.
    fn wait_for_log(&self, message: &str) -> Value {
        let deadline = Instant::now() + SAFETY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .logs
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {message:?} log line"));
            if line["fields"]["message"] == message {
                return line;
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + SAFETY;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the shim did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Reads one response head (up to the blank line).
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).expect("read a response head");
        assert!(n > 0, "closed before a response head: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn graceful_on(signal: &str) {
    let mut shim = Shim::start();
    let listening = shim.wait_for_log("listening");
    let address = listening["fields"]["address"].as_str().unwrap().to_owned();

    // A request in flight: headers read, body awaited (the server's `100 Continue` says the
    // handler side is reading it), body not sent yet.
    let body =
        r#"{"email":"late@example.com","username":"late","password":"correct horse battery"}"#;
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(SAFETY)).unwrap();
    write!(
        stream,
        "POST /auth/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    assert!(read_head(&mut stream).starts_with("HTTP/1.1 100"));

    shim.signal(signal);
    let shutting = shim.wait_for_log("shutting down");
    assert_eq!(shutting["fields"]["signal"], format!("SIG{signal}"));

    stream.write_all(body.as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(
        head.starts_with("HTTP/1.1 202"),
        "in-flight request: {head}"
    );

    let status = shim.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    shim.wait_for_log("stopped");
    let wal = std::fs::metadata(shim.data_dir.join("momentum.sqlite3-wal")).map(|m| m.len());
    assert!(
        matches!(wal, Ok(0) | Err(_)),
        "the store is flushed: write-ahead log {wal:?}"
    );
    assert!(shim.data_dir.join("momentum.sqlite3").exists());
}

#[test]
fn sigterm_finishes_requests_in_flight_and_flushes_the_store() {
    graceful_on("TERM");
}

#[test]
fn ctrl_c_finishes_requests_in_flight_and_flushes_the_store() {
    graceful_on("INT");
}
