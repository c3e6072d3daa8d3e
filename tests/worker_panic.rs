//! A worker thread that panics stops the whole process with status 70 and a
//! log line naming the worker and the panic, instead of hanging it: before,
//! a worker that died during graceful shutdown never reported its drain,
//! the other workers waited for it forever and so did the process.
//!
//! The panic is made by the test-only `WSEDGE_TEST_PANIC_WORKER` variable
//! (see `wsedge::server::TEST_PANIC_WORKER_ENV`).

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Far beyond the ~0.1 s this takes; only there so a regression fails
/// instead of hanging the suite.
const HANG: Duration = Duration::from_secs(30);

fn spawn(trigger: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args(["--listen", "127.0.0.1:0", "--workers", "2"])
        .env(wsedge::server::TEST_PANIC_WORKER_ENV, trigger)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the exit, or kills the child after [`HANG`] and fails.
fn exit_status(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + HANG;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server still ran {HANG:?} after its worker panicked");
}

fn stderr(child: &mut Child) -> String {
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    err
}

#[test]
fn a_worker_that_panics_while_serving_stops_the_process_with_status_70() {
    let mut child = spawn("1");
    let status = exit_status(&mut child);
    let err = stderr(&mut child);
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("ERROR"), "{err}");
    assert!(err.contains("worker 1 panicked (test-only panic"), "{err}");
}

#[test]
fn a_worker_that_panics_during_graceful_shutdown_does_not_hang_the_process() {
    let mut child = spawn("1@drain");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("listening"), "{line}");
    // SAFETY: kill(2) takes plain integers and touches no memory; the pid is
    // our child's, not yet waited for, so it cannot name another process.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let status = exit_status(&mut child);
    let err = stderr(&mut child);
    assert_eq!(status.code(), Some(70), "{err}");
    assert!(err.contains("shutting down"), "the signal was handled first: {err}");
    assert!(err.contains("worker 1 panicked (test-only panic"), "{err}");
    assert!(err.contains("@drain"), "{err}");
}
