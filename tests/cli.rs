//! The `wsedge` command line: `--help` prints the usage and exits 0; a bad
//! flag or value names itself and exits 2 without starting a server.

use std::process::Command;

fn wsedge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wsedge")).args(args).output().unwrap()
}

#[test]
fn help_prints_every_flag_and_exits_0() {
    let out = wsedge(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for flag in ["--listen", "--workers", "--config", "--print-default-config", "--check-config"] {
        assert!(text.contains(flag), "{flag} missing from --help:\n{text}");
    }
}

#[test]
fn bad_flags_exit_2_with_a_message_naming_them() {
    for (args, named) in [
        (&["--lisen", "127.0.0.1:0"][..], "--lisen"),
        (&["--listen", "localhost"][..], "'localhost' is not ADDR:PORT"),
        (&["--workers", "0"][..], "--workers: 0 is out of range"),
        (&["--listen"][..], "--listen"),
    ] {
        let out = wsedge(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
        assert!(err.contains("USAGE"), "the usage follows the error: {err}");
        assert!(out.stdout.is_empty(), "no server started for {args:?}");
    }
}

#[test]
fn the_default_config_shows_the_history_keys_and_its_example_parses() {
    let out = wsedge(&["--print-default-config"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for key in ["history_size = 0", "history_ttl_ms = 0", "history_max_bytes = 67108864"] {
        assert!(text.contains(key), "{key} missing from the default config");
    }
    // Uncommenting the example gives a valid config with the override.
    let uncommented = text.replace("#   ", "");
    let c = wsedge::Config::from_toml(&uncommented, "default").expect("the example parses");
    assert_eq!(c.pubsub.history_rooms.len(), 1);
    assert_eq!(c.pubsub.history_rooms[0].pattern, "chat:*");
    assert_eq!((c.pubsub.history_rooms[0].size, c.pubsub.history_rooms[0].ttl_ms), (100, 300_000));
}
