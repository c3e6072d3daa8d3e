//! The end of a client run: a human summary on stdout, then exactly one JSON
//! line starting with `{"mode":` (what scripts/bench.sh collects), and the
//! exit code. The JSON is written by hand, one key at a time.

use std::process::ExitCode;

use hdrhistogram::Histogram;

use crate::config::{Config, Mode};
use crate::stats::{ErrKind, Stats};

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for ch in s.chars() {
        match ch {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Hand-written JSON object on one line: `new`, then one call per key
/// (`s` string, `u` integer, `f` float with `prec` decimals, `b` bool, `raw`
/// preformatted), then `finish`.
pub struct Json(String);

impl Json {
    pub fn new(mode: &str) -> Json {
        Json(format!("{{\"mode\":{}", json_str(mode)))
    }
    pub fn s(&mut self, k: &str, v: &str) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{}", json_str(v)));
        self
    }
    pub fn u(&mut self, k: &str, v: u64) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    pub fn f(&mut self, k: &str, v: f64, prec: usize) -> &mut Json {
        let v = if v.is_finite() { v } else { 0.0 };
        self.0.push_str(&format!(",\"{k}\":{v:.prec$}"));
        self
    }
    pub fn b(&mut self, k: &str, v: bool) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    pub fn raw(&mut self, k: &str, v: &str) -> &mut Json {
        self.0.push_str(&format!(",\"{k}\":{v}"));
        self
    }
    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.0);
        s.push('}');
        s
    }
}

fn error_kinds_json(st: &Stats) -> String {
    let mut o = String::from("{");
    for k in ErrKind::ALL {
        let n = st.errs[k as usize];
        if n > 0 {
            if o.len() > 1 {
                o.push(',');
            }
            o.push_str(&format!("\"{}\":{n}", k.name()));
        }
    }
    o.push('}');
    o
}

fn first_error_json(st: &Stats) -> String {
    for k in ErrKind::ALL {
        if let Some(m) = &st.first[k as usize] {
            return json_str(&format!("{}: {m}", k.name()));
        }
    }
    "null".to_string()
}

fn print_errors(st: &Stats) {
    let total = st.errors();
    if total == 0 {
        println!("errors        0");
        return;
    }
    let kinds: Vec<String> = ErrKind::ALL
        .iter()
        .filter(|k| st.errs[**k as usize] > 0)
        .map(|k| format!("{} {}", k.name(), st.errs[*k as usize]))
        .collect();
    println!("errors        {total} ({})", kinds.join(", "));
    for k in ErrKind::ALL {
        if let Some(m) = &st.first[k as usize] {
            println!("  {:<18} e.g. {m}", k.name());
        }
    }
}

struct Lat {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Lat {
    /// `p50 A  p90 B  p99 C  p99.9 D  max E` (microseconds), as the summary prints it.
    fn percentiles(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

fn lat(h: &Histogram<u64>) -> Lat {
    if h.is_empty() {
        return Lat { p50: 0, p90: 0, p99: 0, p999: 0, max: 0, mean: 0.0 };
    }
    Lat {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}

fn add_lat(j: &mut Json, l: &Lat) {
    j.u("p50_us", l.p50)
        .u("p90_us", l.p90)
        .u("p99_us", l.p99)
        .u("p999_us", l.p999)
        .u("max_us", l.max)
        .f("mean_us", l.mean, 1);
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// Prints the summary and the JSON line; the exit code says whether anything
/// was measured.
pub fn report(cfg: &Config, st: &Stats, elapsed: f64, overflows: Option<u64>) -> ExitCode {
    let url = &cfg.target.url;
    let mode = cfg.mode.name();
    let errors = st.errors();
    let mut j = Json::new(mode);
    j.s("url", url);
    if let Some(tls) = &cfg.tls {
        j.s("tls", tls.versions_name())
            .u("tls_resume", u64::from(tls.resume))
            .u("resumed", st.resumed);
    }
    let ok = match cfg.mode {
        Mode::Echo | Mode::TcpEcho => {
            let secs = st.win_secs;
            let rate = per_sec(st.msgs, secs);
            let mbs = per_sec(st.bytes, secs) / 1e6;
            let l = lat(&st.lat);
            let est_secs = st.ready_ns as f64 / 1e9;
            let hs_rate = per_sec(st.handshakes, est_secs);
            let kind = if cfg.mode == Mode::TcpEcho {
                "records"
            } else if cfg.binary {
                "binary"
            } else {
                "text"
            };
            println!("== wsedge-bench {mode} {url} ==");
            println!(
                "connections   {} established / {} ({} in {:.3} s, {:.0}/s), threads {}",
                st.handshakes,
                cfg.conns,
                if cfg.mode == Mode::TcpEcho { "connects" } else { "handshakes" },
                est_secs,
                hs_rate,
                cfg.threads
            );
            println!(
                "load          inflight {} per connection, {} B {kind}, warmup {:.1} s",
                cfg.inflight, cfg.size, cfg.warmup
            );
            println!("measured      {secs:.3} s");
            println!(
                "messages      {} echoes ({rate:.0} msgs/s); {} received in all, {} sent",
                st.msgs, st.recv_all, st.sent
            );
            println!("throughput    {mbs:.2} MB/s echoed payload received (MB = 1e6 bytes)");
            println!("latency us    {}  mean {:.1}", l.percentiles(), l.mean);
            print_errors(st);
            if cfg.mode == Mode::Echo {
                println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            }
            j.u("conns", cfg.conns)
                .u("threads", cfg.threads as u64)
                .u("inflight", u64::from(cfg.inflight))
                .u("size", cfg.size as u64);
            if cfg.mode == Mode::Echo {
                j.b("binary", cfg.binary);
            }
            j.f("warmup", cfg.warmup, 3)
                .f("secs", secs, 3)
                .u("messages", st.msgs)
                .u("received", st.recv_all)
                .u("sent", st.sent)
                .f("msgs_per_sec", rate, 1)
                .f("mb_per_sec", mbs, 3);
            add_lat(&mut j, &l);
            j.u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", hs_rate, 1)
                .u("established", st.handshakes)
                .u("lost", st.lost);
            if cfg.mode == Mode::Echo {
                j.u("close_ok", st.close_ok);
            }
            st.handshakes > 0 && st.msgs > 0
        }
        Mode::Connect => {
            let secs = st.last_resolved_ns as f64 / 1e9;
            let rate = per_sec(st.handshakes, secs);
            let l = lat(&st.hs_lat);
            println!("== wsedge-bench connect {url} ==");
            println!(
                "attempts      {} total, concurrency {}, sources {}, threads {}",
                cfg.conns, cfg.concurrency, cfg.sources, cfg.threads
            );
            println!(
                "handshakes    {} completed in {secs:.3} s ({rate:.0}/s), {} failed, {} not attempted/finished in time",
                st.handshakes, st.failed, st.incomplete
            );
            println!("handshake us  {}  mean {:.1}", l.percentiles(), l.mean);
            println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            print_errors(st);
            j.u("total", cfg.conns)
                .u("concurrency", cfg.concurrency)
                .u("sources", u64::from(cfg.sources))
                .u("threads", cfg.threads as u64)
                .f("secs", secs, 3)
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", rate, 1)
                .u("established", st.handshakes)
                .u("failed", st.failed)
                .u("incomplete", st.incomplete);
            add_lat(&mut j, &l);
            j.u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("close_ok", st.close_ok)
                .u("close_eof", st.close_eof);
            st.handshakes > 0
        }
        Mode::Idle => {
            let est_secs = st.ready_ns as f64 / 1e9;
            let rate = per_sec(st.handshakes, est_secs);
            let l = lat(&st.hs_lat);
            println!("== wsedge-bench idle {url} ==");
            println!(
                "established   {} / {} in {est_secs:.3} s ({rate:.0} handshakes/s), {} failed; sources {}, threads {}",
                st.handshakes, cfg.conns, st.failed, cfg.sources, cfg.threads
            );
            println!("handshake us  {}", l.percentiles());
            println!(
                "hold          {:.1} s; {} lost during the run; {} pings answered; {} messages received",
                cfg.secs, st.lost, st.pongs, st.other_msgs
            );
            println!("close         {} close replies, {} EOF", st.close_ok, st.close_eof);
            print_errors(st);
            j.u("conns", cfg.conns)
                .u("established", st.handshakes)
                .u("failed", st.failed)
                .f("establish_secs", est_secs, 3)
                .f("hold", cfg.secs, 3)
                .f("secs", elapsed, 3)
                .u("sources", u64::from(cfg.sources))
                .u("threads", cfg.threads as u64)
                .f("rate", cfg.rate, 1)
                .u("echo_first", cfg.echo_first as u64)
                .u("handshakes", st.handshakes)
                .f("handshakes_per_sec", rate, 1);
            add_lat(&mut j, &l);
            j.u("lost", st.lost)
                .u("pongs", st.pongs)
                .u("messages", st.other_msgs)
                .u("errors", errors)
                .raw("error_kinds", &error_kinds_json(st))
                .u("close_ok", st.close_ok);
            st.handshakes > 0
        }
    };
    print_cpu(st, cfg.threads);
    match overflows {
        Some(n) => {
            if n > 0 {
                println!(
                    "kernel        {n} listen-queue overflows during the run (host-wide): an accept backlog was full; expect ~1 s SYN-retransmit handshake tails"
                );
            }
            j.u("listen_overflows", n);
        }
        None => {
            j.raw("listen_overflows", "null");
        }
    }
    if let Some(tls) = &cfg.tls {
        println!(
            "tls           {}, resumption {}: {} of {} handshakes resumed",
            tls.versions_name(),
            if tls.resume { "on" } else { "off" },
            st.resumed,
            st.handshakes
        );
    }
    j.f("cpu_s", st.cpu_s, 3)
        .f("busy_max_pct", st.busy_max * 100.0, 1)
        .u("reads", st.reads)
        .u("writes", st.writes)
        .u("polls", st.polls)
        .raw("first_error", &first_error_json(st));
    println!("{}", j.finish());
    if ok {
        ExitCode::SUCCESS
    } else {
        let why = if st.handshakes == 0 {
            "no connection could be established"
        } else {
            "no echo was received in the measurement window"
        };
        eprintln!("wsedge-bench: nothing measured: {why}");
        ExitCode::FAILURE
    }
}

/// Tell the user when the load generator itself may have been the limit.
fn print_cpu(st: &Stats, threads: usize) {
    println!(
        "bench cpu     {:.2} s over {threads} thread(s), busiest thread {:.0}% of a core; {} reads, {} writes, {} polls",
        st.cpu_s,
        st.busy_max * 100.0,
        st.reads,
        st.writes,
        st.polls
    );
    if st.busy_max > 0.9 {
        eprintln!(
            "wsedge-bench: warning: a load generator thread was {:.0}% busy: results may be limited by the load generator (or CPU contention); try --threads",
            st.busy_max * 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let mut j = Json::new("echo");
        j.s("url", "ws://x").u("n", 3).f("r", 1.5, 2).b("t", true);
        assert_eq!(
            j.finish(),
            "{\"mode\":\"echo\",\"url\":\"ws://x\",\"n\":3,\"r\":1.50,\"t\":true}"
        );
    }
}
