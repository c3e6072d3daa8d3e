//! A client run from start to end: splits the configuration into one
//! [`Plan`] per worker thread, starts the workers, prints progress once a
//! second while they run (and, for idle, announces when all are up), then
//! merges their statistics and hands them to [`crate::report`].

use std::io;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, Mode};
use crate::report::report;
use crate::stats::Stats;
use crate::sys::{listen_overflows, raise_nofile};
use crate::worker::Worker;

/// What one worker thread does: its share of the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub id: usize,
    pub conns: u64,
    pub concurrency: u64,
    pub rate: f64,
}

/// Share `i` of `n` when `total` is split as evenly as possible.
fn split(total: u64, n: usize, i: usize) -> u64 {
    let n = n as u64;
    let i = i as u64;
    total / n + u64::from(i < total % n)
}

/// Progress one worker publishes for the main thread (its own cache lines).
#[derive(Default)]
#[repr(align(128))]
pub struct Pub {
    pub progress: AtomicU64,
    pub open: AtomicU64,
    pub errors: AtomicU64,
    pub established: AtomicU64,
    /// All attempts resolved (idle: the hold may start).
    pub ready: AtomicBool,
    pub done: AtomicBool,
}

/// What the workers and the main thread share during a run.
pub struct Shared {
    pub pubs: Vec<Pub>,
    /// idle: ns since start at which the hold ends; 0 = not known yet.
    pub hold_end_ns: AtomicU64,
}

/// Runs a client mode to its end; the exit code is the run's.
pub fn run_client(cfg: Arc<Config>) -> ExitCode {
    let limit = raise_nofile();
    let need_fds = match cfg.mode {
        Mode::Connect => cfg.concurrency * 4,
        _ => cfg.conns,
    };
    if limit > 0 && need_fds + 64 > limit {
        eprintln!(
            "wsedge-bench: warning: open-file limit is {limit}, this run may need {need_fds} sockets"
        );
    }
    let threads = cfg.threads;
    let shared = Arc::new(Shared {
        pubs: (0..threads).map(|_| Pub::default()).collect(),
        hold_end_ns: AtomicU64::new(0),
    });
    let overflows_before = listen_overflows();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let plan = Plan {
            id: i,
            conns: split(cfg.conns, threads, i),
            concurrency: split(cfg.concurrency, threads, i).max(1),
            rate: cfg.rate / threads as f64,
        };
        let worker = match Worker::new(cfg.clone(), plan, shared.clone(), start) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("wsedge-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let h = std::thread::Builder::new().name(format!("bench-{i}")).spawn(move || worker.run());
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("wsedge-bench: cannot start thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    monitor(&cfg, &shared, start);

    let mut total: Option<Stats> = None;
    for h in handles {
        match h.join() {
            Ok(Ok(st)) => match total.as_mut() {
                Some(t) => t.merge(st),
                None => total = Some(st),
            },
            Ok(Err(e)) => {
                eprintln!("wsedge-bench: worker failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("wsedge-bench: worker thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(st) = total else {
        return ExitCode::FAILURE;
    };
    let elapsed = start.elapsed().as_secs_f64();
    let overflows = match (overflows_before, listen_overflows()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    report(&cfg, &st, elapsed, overflows)
}

fn monitor(cfg: &Config, shared: &Shared, start: Instant) {
    let unit = match cfg.mode {
        Mode::Echo => "msgs/s",
        Mode::TcpEcho => "records/s",
        Mode::Connect | Mode::Idle => "handshakes/s",
    };
    let mut held: Vec<String> = Vec::new();
    let mut printing = false;
    let mut next_sec = 1u64;
    let mut last = 0u64;
    let mut announced = false;
    loop {
        if shared.pubs.iter().all(|p| p.done.load(Ordering::Acquire)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        let el = start.elapsed();
        if cfg.mode == Mode::Idle
            && !announced
            && shared.pubs.iter().all(|p| p.ready.load(Ordering::Acquire))
        {
            announced = true;
            let est: u64 = shared.pubs.iter().map(|p| p.established.load(Ordering::Relaxed)).sum();
            eprintln!("established {est}");
            if let Some(path) = &cfg.ready_file {
                if let Err(e) = write_ready_file(path, est) {
                    eprintln!("wsedge-bench: cannot write --ready-file {path}: {e}");
                }
            }
            let hold = if est == 0 { 0.0 } else { cfg.secs };
            let end = el.as_nanos() as u64 + (hold * 1e9) as u64;
            shared.hold_end_ns.store(end.max(1), Ordering::Release);
        }
        if el.as_secs() >= next_sec {
            let prog: u64 = shared.pubs.iter().map(|p| p.progress.load(Ordering::Relaxed)).sum();
            let open: u64 = shared.pubs.iter().map(|p| p.open.load(Ordering::Relaxed)).sum();
            let errs: u64 = shared.pubs.iter().map(|p| p.errors.load(Ordering::Relaxed)).sum();
            let line = format!(
                "[{next_sec:>4}s] conns {open:>7} established | {:>9} {unit} (last 1 s) | errors {errs}",
                prog - last.min(prog)
            );
            last = prog;
            if printing {
                eprintln!("{line}");
            } else {
                held.push(line);
            }
            next_sec += 1;
        }
        if !printing && el > Duration::from_secs(3) {
            printing = true;
            for l in held.drain(..) {
                eprintln!("{l}");
            }
        }
    }
}

/// Writes `n` into `path` atomically (a temporary file, then rename).
fn write_ready_file(path: &str, n: u64) -> io::Result<()> {
    let tmp = format!("{path}.tmp{}", std::process::id());
    std::fs::write(&tmp, format!("{n}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_exact() {
        for total in [1u64, 7, 100, 1001] {
            for n in 1..6 {
                let s: u64 = (0..n).map(|i| split(total, n, i)).sum();
                assert_eq!(s, total);
            }
        }
    }
}
