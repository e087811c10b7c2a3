//! The real `dotstub` binary run as a child process: its output read line
//! by line (the listening port comes from the log, since it binds port 0),
//! SIGTERM, and its exit. Killed when dropped, so a failing test leaves no
//! dotstub behind.

use std::{
    fmt,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    sync::mpsc::{self, UnboundedReceiver},
    time::timeout,
};

/// Not a performance bound: only how long a hung dotstub may hold up the suite.
pub const MUST_FINISH: Duration = Duration::from_secs(20);
/// How long dotstub may take to stop after SIGTERM with nothing in flight.
pub const STOP_WITHIN: Duration = Duration::from_secs(10);

/// How a dotstub process ended, and everything it wrote.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error (the log).
    pub stderr: String,
}

impl fmt::Display for Finished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (status, stdout, stderr) = (self.status, &self.stdout, &self.stderr);
        write!(f, "{status}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    }
}

/// A running dotstub; killed when dropped, so a failing test leaves none behind.
pub struct Process {
    child: std::process::Child,
    stdout: UnboundedReceiver<String>,
    stderr: UnboundedReceiver<String>,
    /// stderr lines read so far.
    seen: Vec<String>,
}

impl Process {
    /// Resident memory (VmRSS) of the process, in octets.
    pub fn resident_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| {
                value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    pub fn spawn(command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dotstub");
        let stdout = lines_of(child.stdout.take().expect("stdout is piped"));
        let stderr = lines_of(child.stderr.take().expect("stderr is piped"));
        Process {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until `listening on UDP address=…`; dotstub binds port 0,
    /// so that line is the only place the port shows.
    pub async fn listening_addr(&mut self) -> SocketAddr {
        let found = timeout(MUST_FINISH, async {
            while let Some(line) = self.stderr.recv().await {
                let addr = line
                    .split_once("listening on UDP address=")
                    .map(|(_, addr)| addr.trim().parse().expect("a socket address"));
                self.seen.push(line);
                if addr.is_some() {
                    return addr;
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(addr)) => addr,
            _ => panic!("dotstub logged no UDP port:\n{}", self.seen.join("\n")),
        }
    }

    /// Everything dotstub wrote to stderr so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Sends SIGTERM and waits for dotstub to stop.
    pub async fn terminate(&mut self) -> Finished {
        let pid = self.child.id().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        self.finish(STOP_WITHIN).await
    }

    /// Waits (at most `within`) for the exit, then collects the output.
    pub async fn finish(&mut self, within: Duration) -> Finished {
        let exited = async {
            loop {
                if let Some(status) = self.child.try_wait().expect("wait for dotstub") {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let Ok(status) = timeout(within, exited).await else {
            panic!("dotstub still running; stderr:\n{}", self.seen.join("\n"));
        };
        let mut stdout = Vec::new();
        let collect = async {
            while let Some(line) = self.stderr.recv().await {
                self.seen.push(line);
            }
            while let Some(line) = self.stdout.recv().await {
                stdout.push(line);
            }
        };
        timeout(MUST_FINISH, collect).await.expect("pipes close");
        Finished {
            status,
            stdout: stdout.join("\n"),
            stderr: self.seen.join("\n"),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lines of `pipe`, read on a thread of their own (no pipe ever fills
/// and blocks dotstub), without colour codes.
fn lines_of(pipe: impl Read + Send + 'static) -> UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        // Read to the end even when nobody listens any more, so dotstub never
        // meets a closed pipe.
        for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
            let _ = tx.send(strip_ansi(&String::from_utf8_lossy(&line)));
        }
    });
    rx
}

/// dotstub colours its log even into a pipe; drop the escape sequences so
/// assertions see the text a terminal would show.
fn strip_ansi(line: &str) -> String {
    let mut text = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            text.push(c);
        } else if chars.next() == Some('[') {
            // A CSI sequence ends with its first character in '@'..='~'.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    text
}
