//! `wsedge-client`, the binary, against an in-process server: echo from
//! stdin, subscribe and publish between two processes, the documented exit
//! statuses (0, 2, 3, 4, 130), and `--help` naming every option.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use wsedge::auth::ApiKeyConfig;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsedge-client"))
}

/// Waits for `child` with a bound (kills it past 20 s); returns its status code.
fn wait(child: &mut Child) -> i32 {
    for _ in 0..400 {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("wsedge-client did not exit");
}

fn run(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = cli()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let code = wait(&mut child);
    let out = child.wait_with_output().unwrap();
    (code, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn echo_sends_stdin_lines_and_prints_the_replies() {
    let server = start(&config(1, |_| {}));
    let url = format!("ws://{}/echo", server.local_addr());
    let (code, out, err) = run(&[&url], "one\ntwo\r\nthree");
    assert_eq!((code, out.as_str()), (0, "one\ntwo\nthree\n"), "{err}");
    let (code, out, _) = run(&["--binary", "--json", &url], "bin\n");
    assert_eq!(code, 0);
    assert!(out.contains(r#""binary":"Ymlu""#), "{out}");
    // Echo until one message: --once closes with --close-code.
    let (code, out, _) = run(&["--once", "--close-code", "4000", &url], "a\nb\n");
    assert_eq!((code, out.as_str()), (0, "a\n"));
}

#[test]
fn subscribe_in_one_process_publish_in_another() {
    let server = start(&config(2, |_| {}));
    let url = format!("ws://{}/ws", server.local_addr());
    let mut sub = cli()
        .args(["--subscribe", "news", "--max-messages", "2", "--json", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    // Publish only once the subscription is acked.
    loop {
        let line = lines.next().expect("subscriber output").unwrap();
        if line.contains(r#""event":"subscribed""#) {
            break;
        }
    }
    let (code, _, err) = run(&["--publish", "news", &url], "{\"n\":1}\nplain words\n");
    assert_eq!(code, 0, "{err}");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(wait(&mut sub), 0);
    let deliveries: Vec<serde_json::Value> = rest
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "delivery")
        .collect();
    assert_eq!(deliveries.len(), 2, "{rest:?}");
    assert_eq!(deliveries[0]["data"], serde_json::json!({"n": 1}));
    assert_eq!(deliveries[1]["data"], "plain words", "a line that is not JSON goes as a string");
    assert_eq!(
        (deliveries[0]["offset"].as_u64(), deliveries[0]["room"].as_str()),
        (Some(1), Some("news"))
    );
}

#[test]
fn exit_statuses_scripts_can_rely_on() {
    // 2: bad arguments.
    assert_eq!(run(&["--close-code", "1005", "ws://127.0.0.1:1/"], "").0, 2);
    // 3: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, _, err) = run(&[&format!("ws://127.0.0.1:{port}/")], "");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("refused"), "{err}");
    // 4: refused for good, even with --reconnect.
    let secured = start(&config(1, |c| {
        c.auth.required = true;
        c.auth.api_keys = vec![ApiKeyConfig {
            name: "k".into(),
            key: "right-key-0123456789".into(),
            subscribe: vec!["*".into()],
            ..ApiKeyConfig::default()
        }];
    }));
    let url = format!("ws://{}/ws", secured.local_addr());
    let (code, _, err) =
        run(&["--reconnect", "--backoff-min", "10ms", "--token", "wrong-key-0123456789", &url], "");
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("401"), "{err}");
    // With the right key, by query: connects, stdin ends, 0.
    let (code, _, err) = run(&["--token", "right-key-0123456789", "--token-in", "query", &url], "");
    assert_eq!(code, 0, "{err}");
}

#[test]
fn ctrl_c_closes_with_1000_and_exits_130() {
    let server = start(&config(1, |_| {}));
    let url = format!("ws://{}/ws", server.local_addr());
    let mut child = cli()
        .args(["--subscribe", "quiet", "--json", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while !lines.next().unwrap().unwrap().contains("subscribed") {}
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    assert_eq!(wait(&mut child), 130);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter().any(|l| l.contains("closed by us (1000)")),
        "the close handshake finished: {rest:?}"
    );
}

#[test]
fn help_names_every_option() {
    let (code, out, _) = run(&["--help"], "");
    assert_eq!(code, 0);
    for opt in [
        "--binary",
        "--header",
        "-H",
        "--token",
        "--token-in",
        "--origin",
        "--subscribe",
        "--publish",
        "--json",
        "--reconnect",
        "--backoff-min",
        "--backoff-max",
        "--max-attempts",
        "--ping-interval",
        "--once",
        "--max-messages",
        "--close-code",
        "--ca",
        "--connect-to",
        "EXIT STATUS",
    ] {
        assert!(out.contains(opt), "--help lacks {opt}");
    }
}
