//! Cluster test harness: a throwaway `redis-server` (loopback, a free port,
//! no persistence, its own temporary directory, stopped by PID) and wsedge
//! nodes run as separate processes (the `wsedge` binary) against it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let unique = format!(
            "wsedge-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        );
        let p = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound once and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// A `redis-server` child process.
pub struct Redis {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// Starts one on `port`.
    pub fn start_on(port: u16) -> Redis {
        let mut r = Redis { port, dir: TempDir::new("redis"), child: None };
        r.spawn();
        r
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// True when it answers PING.
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one inline command and returns the first reply chunk.
    pub fn command(&self, cmd: &str) -> Option<String> {
        self.commands(&[cmd]).pop()
    }

    /// Sends inline commands on one connection; one reply chunk each.
    pub fn commands(&self, cmds: &[&str]) -> Vec<String> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return Vec::new() };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut out = Vec::new();
        for cmd in cmds {
            if s.write_all(format!("{cmd}\r\n").as_bytes()).is_err() {
                break;
            }
            let mut buf = vec![0u8; 1 << 16];
            match s.read(&mut buf) {
                Ok(n) if n > 0 => out.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                _ => break,
            }
        }
        out
    }

    /// Stops it (SIGKILL, by PID): everything it held is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP / SIGCONT: a Redis that answers nothing for a while.
    pub fn pause(&self, paused: bool) {
        if let Some(c) = &self.child {
            signal(c.id(), if paused { "STOP" } else { "CONT" });
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
    }
}

/// A wsedge node: the binary, with its config in a temporary directory.
pub struct Node {
    pub addr: SocketAddr,
    child: Option<Child>,
    pub dir: TempDir,
}

impl Node {
    /// Starts `wsedge` with 2 workers, this `[cluster]` Redis URL and node
    /// id, and `extra` TOML appended (other sections).
    // The child is waited for by `Drop` once it is in the `Node`, and here
    // when it does not start.
    #[allow(clippy::zombie_processes)]
    pub fn start(url: &str, node_id: u16, prefix: &str, cluster_extra: &str, extra: &str) -> Node {
        let dir = TempDir::new("node");
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n\n[log]\nsummary_interval_ms = 0\n\n\
             [cluster]\nredis_url = \"{url}\"\nnode_id = {node_id}\nkey_prefix = \"{prefix}\"\n\
             {cluster_extra}\n\n{extra}\n"
        );
        let path = dir.0.join("wsedge.toml");
        std::fs::write(&path, config).unwrap();
        let out = std::fs::File::create(dir.0.join("stdout")).unwrap();
        let err = std::fs::File::create(dir.0.join("stderr")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(dir.0.join("stdout")).unwrap_or_default();
            if let Some(rest) = text.split("wsedge listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
                return Node { addr, child: Some(child), dir };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node did not start: {text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }

    /// SIGKILL: the node dies without a word to anyone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `GET path` on the node: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        super::http(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    }

    /// True once `/readyz` answers `status`.
    pub fn ready_becomes(&self, status: u16) -> bool {
        super::eventually(|| self.get("/readyz").0 == status)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), "TERM");
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A key prefix no other test uses.
pub fn prefix(tag: &str) -> String {
    format!("t{}{tag}", std::process::id())
}
