//! Shared command-line handling for the peer echo servers.

use std::net::SocketAddr;

/// `--listen ADDR --threads N` (both optional).
pub struct Args {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Runtime worker threads (`tt-echo` only; `fws-echo` is current-thread).
    pub threads: usize,
}

/// Parses `--listen ADDR` (default 127.0.0.1:9002) and `--threads N` (default 1).
pub fn args(name: &str) -> Args {
    args_with(name, &[]).0
}

/// [`args`] plus the required flags in `extra` (each with a value),
/// returned in the order given.
pub fn args_with(name: &str, extra: &[&str]) -> (Args, Vec<String>) {
    let mut values: Vec<Option<String>> = vec![None; extra.len()];
    let mut listen: SocketAddr = "127.0.0.1:9002".parse().expect("valid default");
    let mut threads = 1;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val =
            |flag: &str| it.next().unwrap_or_else(|| usage(name, &format!("{flag} needs a value")));
        match a.as_str() {
            "--listen" => {
                let v = val("--listen");
                listen = v.parse().unwrap_or_else(|_| usage(name, &format!("bad address {v:?}")));
            }
            "--threads" => {
                let v = val("--threads");
                threads = match v.parse() {
                    Ok(n) if n >= 1 => n,
                    _ => usage(name, &format!("bad thread count {v:?}")),
                };
            }
            "-h" | "--help" => usage(name, ""),
            other => match extra.iter().position(|f| *f == other) {
                Some(i) => values[i] = Some(val(other)),
                None => usage(name, &format!("unknown argument {other:?}")),
            },
        }
    }
    let values = values
        .into_iter()
        .zip(extra)
        .map(|(v, f)| v.unwrap_or_else(|| usage(name, &format!("{f} is required"))))
        .collect();
    (Args { listen, threads }, values)
}

fn usage(name: &str, err: &str) -> ! {
    if !err.is_empty() {
        eprintln!("{name}: {err}");
    }
    eprintln!("usage: {name} [--listen ADDR:PORT] [--threads N] [--cert PEM --key PEM]");
    std::process::exit(if err.is_empty() { 0 } else { 2 })
}
