//! The wsedge server binary: arguments, config loading, start-up.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use wsedge::config::{Config, ConfigError, DEFAULT_TOML};
use wsedge::Server;

const USAGE: &str = "\
wsedge: a WebSocket edge server

USAGE:
    wsedge [--listen ADDR:PORT] [--workers N] [--config FILE] [--redis-url URL]
    wsedge --print-default-config
    wsedge --check-config FILE

OPTIONS:
    --listen ADDR:PORT        address to listen on (default 127.0.0.1:8080)
    --workers N               worker threads, one poll loop each (default: one per core)
    --config FILE             TOML configuration file (default: the embedded default)
    --redis-url URL           join a cluster through Redis ([cluster] redis_url),
                              e.g. redis://127.0.0.1:6379
    --print-default-config    print the embedded default configuration, commented
    --check-config FILE       validate FILE and exit
    -h, --help                this help

Flags override the config file, which overrides the embedded default.
A value may follow its flag or be attached with =, e.g. --workers=4.
Logging: RUST_LOG=debug|info|warn (default info).";

/// How often freed heap memory is handed back to the kernel.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Hands memory the allocator keeps after a burst (a publish flood, large
/// messages) back to the kernel. glibc keeps freed memory in each thread's
/// arena and returns only the top of the main heap by itself, so after a
/// flood ends RSS would stay at its peak. One `malloc_trim` every
/// [`TRIM_INTERVAL`] releases it (BENCHMARKS.md, "Memory after a flood").
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a byte count and only walks glibc's own
    // arenas under their locks; it touches no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Exit status when a worker thread panicked or stopped on its own
/// (EX_SOFTWARE in sysexits.h): the process is broken, restart it.
const EXIT_WORKER_DIED: u8 = 70;

#[derive(Debug, Default, PartialEq)]
struct Args {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    config: Option<String>,
    redis_url: Option<String>,
}

#[derive(Debug, PartialEq)]
enum Command {
    Run(Args),
    PrintDefault,
    Check(String),
    Help,
}

/// Parses the arguments after the program name. `--help`,
/// `--print-default-config` and `--check-config FILE` end parsing; values
/// may follow their flag as the next argument or after `=`.
fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Command, lexopt::Error> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(argv);
    let mut args = Args::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("print-default-config") => return Ok(Command::PrintDefault),
            Long("check-config") => return Ok(Command::Check(parser.value()?.string()?)),
            Long("listen") => {
                let v = parser.value()?.string()?;
                let addr = v.parse().map_err(|_| format!("--listen: '{v}' is not ADDR:PORT"))?;
                args.listen = Some(addr);
            }
            Long("workers") => {
                let v = parser.value()?.string()?;
                let n: usize =
                    v.parse().map_err(|_| format!("--workers: '{v}' is not a number"))?;
                if n == 0 || n > 1024 {
                    return Err(format!("--workers: {n} is out of range 1..=1024").into());
                }
                args.workers = Some(n);
            }
            Long("config") => args.config = Some(parser.value()?.string()?),
            Long("redis-url") => {
                let v = parser.value()?.string()?;
                if let Some(problem) = wsedge::config::redis_url_problem(&v) {
                    return Err(format!("--redis-url: {problem}").into());
                }
                args.redis_url = Some(v);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(Command::Run(args))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load_config(path: Option<&str>) -> Result<Config, ConfigError> {
    match path {
        None => Config::from_toml_with_env(DEFAULT_TOML, "<embedded default>", env),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Unreadable { path: path.to_string(), source })?;
            Config::from_toml_with_env(&text, path, env)
        }
    }
}

/// Compact, greppable log lines:
/// `2026-11-28T11:00:00.123Z INFO  w0 worker 0: closing 12 connections`
/// (`w0` is the worker thread, `main` otherwise). Connection lines carry
/// `conn <id>`.
fn init_logging() {
    use std::io::Write;
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("?");
            let who =
                name.strip_prefix("wsedge-worker-").map_or(name.to_string(), |n| format!("w{n}"));
            writeln!(
                buf,
                "{} {:<5} {who} {}",
                buf.timestamp_millis(),
                record.level(),
                record.args()
            )
        })
        .init();
}

/// Large buffers (a 1 MiB message's frame, payload and queue) are served by
/// mmap and returned to the kernel when freed, instead of staying in glibc's
/// per-thread arenas: after a burst of large messages an idle connection
/// costs what it did before, in RSS too.
fn return_large_allocations_to_the_kernel() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called once at start-up
    // before any worker thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

fn main() -> ExitCode {
    return_large_allocations_to_the_kernel();
    init_logging();
    let command = match parse_args(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsedge: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let args = match command {
        Command::Help => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Command::PrintDefault => {
            print!("{DEFAULT_TOML}");
            return ExitCode::SUCCESS;
        }
        Command::Check(path) => {
            return match load_config(Some(&path)) {
                Ok(_) => {
                    println!("{path}: OK");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("wsedge: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Command::Run(args) => args,
    };
    let mut config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wsedge: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(workers) = args.workers {
        config.server.workers = workers;
    }
    if let Some(url) = args.redis_url {
        config.cluster.redis_url = url;
    }
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsedge: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    // SIGINT/SIGTERM: graceful shutdown; a second signal exits at once.
    // Installed before the address is printed: whoever waits for that line
    // (a supervisor, a test) may signal at once.
    let drain = Duration::from_millis(config.shutdown.drain_timeout_ms);
    let handle = server.shutdown_handle();
    match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(mut signals) => {
            let spawned = std::thread::Builder::new().name("signals".into()).spawn(move || {
                for sig in signals.forever() {
                    if handle.shutdown(drain) {
                        log::info!("signal {sig}: shutting down, draining for up to {drain:?}");
                    } else {
                        log::warn!("second signal {sig}: exiting now");
                        std::process::exit(1);
                    }
                }
            });
            if let Err(e) = spawned {
                log::warn!("cannot start the signal thread: {e}");
            }
        }
        Err(e) => log::warn!("cannot install signal handlers: {e}"),
    }

    let addr = server.local_addr();
    println!("wsedge listening on {addr} with {} workers", server.workers());
    if config.demo.enabled && !config.routes.pubsub.is_empty() {
        println!("  browser:  http://{addr}/  (demo chat; [demo] enabled = false in production)");
    }
    if config.cluster.is_on() {
        println!(
            "  cluster:  node {} through {} (key prefix {})",
            server.node_id(),
            config.cluster.redis_url,
            config.cluster.key_prefix
        );
    }
    if !config.routes.echo.is_empty() {
        println!("  echo:     ws://{addr}{}", config.routes.echo);
    }
    if let Some(tls) = server.tls_addr() {
        println!("  wss:      wss://{tls}{}", config.routes.pubsub);
    }
    if !config.routes.pubsub.is_empty() {
        println!("  pub/sub:  ws://{addr}{}  (see PROTOCOL.md)", config.routes.pubsub);
    }
    if config.pubsub.http_publish && !config.routes.publish_api.is_empty() {
        println!("  publish:  POST http://{addr}{}", config.routes.publish_api);
    }
    if config.metrics.enabled {
        let m = server.metrics_addr().unwrap_or(addr);
        println!(
            "  metrics:  http://{m}/metrics  health: http://{m}/healthz  ready: http://{m}/readyz"
        );
        println!("  dashboard: http://{m}/dashboard  (live, one snapshot a second)");
    }
    println!(
        "  try:      python3 -c \"import websockets.sync.client as c; w=c.connect('ws://{addr}{}'); w.send('hi'); print(w.recv())\"",
        config.routes.echo
    );

    let mut server = server;
    let summary = Duration::from_millis(config.log.summary_interval_ms);
    let mut last = (std::time::Instant::now(), server.stats());
    let mut last_trim = std::time::Instant::now();
    while !server.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        if last_trim.elapsed() >= TRIM_INTERVAL {
            last_trim = std::time::Instant::now();
            release_free_memory();
        }
        // A dead worker never reports its drain, so waiting for the others
        // would hang; exit so a supervisor restarts the process. Clients of
        // the other workers get no close frame (README, "Operations").
        if let Some(dead) = server.panicked_worker() {
            log::error!(
                "worker {} panicked ({}); exiting with status {EXIT_WORKER_DIED} without draining",
                dead.index,
                dead.message
            );
            std::process::exit(EXIT_WORKER_DIED.into());
        }
        if server.worker_died() {
            log::error!("a worker stopped unexpectedly; exiting with status {EXIT_WORKER_DIED}");
            std::process::exit(EXIT_WORKER_DIED.into());
        }
        if !summary.is_zero() && last.0.elapsed() >= summary {
            let now = std::time::Instant::now();
            let stats = server.stats();
            let secs = (now - last.0).as_secs_f64();
            log::info!(
                "summary: {} connections, {} rooms, {:.0} msgs/s in, {:.0} msgs/s out, {} queued bytes",
                stats.open,
                stats.rooms,
                (stats.msgs_in - last.1.msgs_in) as f64 / secs,
                (stats.msgs_out - last.1.msgs_out) as f64 / secs,
                stats.queued_bytes
            );
            last = (now, stats);
        }
    }
    let stats = server.join();
    log::info!("stopped: {} connections served, {} messages in", stats.accepted, stats.msgs_in);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from)).map_err(|e| e.to_string())
    }

    #[test]
    fn every_flag_parses_with_a_separate_or_an_attached_value() {
        let want = Args {
            listen: Some("127.0.0.1:9000".parse().unwrap()),
            workers: Some(3),
            config: Some("c.toml".into()),
            redis_url: None,
        };
        let separate = ["--listen", "127.0.0.1:9000", "--workers", "3", "--config", "c.toml"];
        assert_eq!(parse(&separate), Ok(Command::Run(want)));
        let attached = parse(&["--listen=127.0.0.1:9000", "--workers=3", "--config=c.toml"]);
        assert!(matches!(attached, Ok(Command::Run(Args { workers: Some(3), .. }))));
        assert_eq!(parse(&[]), Ok(Command::Run(Args::default())));
        assert_eq!(parse(&["--print-default-config"]), Ok(Command::PrintDefault));
        assert_eq!(parse(&["--check-config", "f.toml"]), Ok(Command::Check("f.toml".into())));
        assert_eq!(parse(&["--workers", "2", "-h"]), Ok(Command::Help));
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_are_named() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(err(&["--lisen", "x"]).contains("--lisen"));
        assert!(err(&["--listen", "nowhere"]).contains("'nowhere' is not ADDR:PORT"));
        assert!(err(&["--workers", "0"]).contains("out of range"));
        assert!(err(&["--workers", "many"]).contains("not a number"));
        assert!(err(&["--config"]).contains("--config"));
        assert!(err(&["stray"]).contains("stray"));
        assert!(err(&["--redis-url", "localhost:6379"]).contains("--redis-url: 'localhost:6379'"));
        let ok = parse(&["--redis-url", "redis://127.0.0.1:6379"]).unwrap();
        assert!(matches!(ok, Command::Run(Args { redis_url: Some(_), .. })));
    }
}
