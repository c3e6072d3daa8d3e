//! The wsedge server binary: arguments, config loading, start-up.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use wsedge::config::{Config, DEFAULT_TOML};
use wsedge::Server;

const USAGE: &str = "\
wsedge: a WebSocket edge server

USAGE:
    wsedge [--listen ADDR:PORT] [--workers N] [--config FILE]
    wsedge --print-default-config
    wsedge --check-config FILE

OPTIONS:
    --listen ADDR:PORT        address to listen on (default 127.0.0.1:8080)
    --workers N               worker threads, one poll loop each (default: one per core)
    --config FILE             TOML configuration file (default: the embedded default)
    --print-default-config    print the embedded default configuration, commented
    --check-config FILE       validate FILE and exit
    -h, --help                this help

Flags override the config file, which overrides the embedded default.
Logging: RUST_LOG=debug|info|warn (default info).";

struct Args {
    listen: Option<SocketAddr>,
    workers: Option<usize>,
    config: Option<String>,
}

enum Command {
    Run(Args),
    PrintDefault,
    Check(String),
    Help,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut args = Args {
        listen: None,
        workers: None,
        config: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--print-default-config" => return Ok(Command::PrintDefault),
            "--check-config" => return Ok(Command::Check(value("--check-config")?)),
            "--listen" => {
                let v = value("--listen")?;
                args.listen = Some(
                    v.parse()
                        .map_err(|_| format!("--listen: '{v}' is not ADDR:PORT"))?,
                );
            }
            "--workers" => {
                let v = value("--workers")?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--workers: '{v}' is not a number"))?;
                if n == 0 || n > 1024 {
                    return Err(format!("--workers: {n} is out of range 1..=1024"));
                }
                args.workers = Some(n);
            }
            "--config" => args.config = Some(value("--config")?),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Command::Run(args))
}

fn load_config(path: Option<&str>) -> Result<Config, String> {
    match path {
        None => Config::from_toml(DEFAULT_TOML, "<embedded default>").map_err(|e| e.to_string()),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{path}: cannot read: {e}"))?;
            Config::from_toml(&text, path).map_err(|e| e.to_string())
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let command = match parse_args(std::env::args().skip(1)) {
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
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wsedge: cannot listen on {}: {e}", config.server.listen);
            return ExitCode::from(1);
        }
    };
    let addr = server.local_addr();
    println!(
        "wsedge listening on {addr} with {} workers",
        server.workers()
    );
    if !config.routes.echo.is_empty() {
        println!("  echo route:  ws://{addr}{}", config.routes.echo);
    }
    println!("  try: python3 -c \"import websockets.sync.client as c; w=c.connect('ws://{addr}{}'); w.send('hi'); print(w.recv())\"", config.routes.echo);
    let mut server = server;
    server.join();
    let _ = Duration::ZERO;
    ExitCode::SUCCESS
}
