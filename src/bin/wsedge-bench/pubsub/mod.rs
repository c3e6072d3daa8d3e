//! `wsedge-bench pubsub`: N subscribers spread over R rooms, P publishers,
//! at a target publish rate or as fast as the windows allow; deliveries/s,
//! publishes/s, publish-to-delivery latency and per-room accounting of
//! missing, duplicated and out-of-order deliveries.
//!
//! - [`proto`]: requests and server messages in the three dialects (wsedge
//!   JSON, wsedge binary, the raw-TCP ceiling), pure.
//! - [`tally`]: per-subscriber `seq` accounting and the run's verdict, pure.
//! - [`run`]: one thread's mio loop.
//!
//! Publishing starts only once every subscribe is acked (the load tester
//! then knows each room's audience), so every subscriber is owed every
//! message of its room. Two windows keep the load tester from measuring its
//! own buffers: at most `--window` unacked publishes per publisher (JSON and
//! the ceiling ack every publish; binary publishes have no ack) and at most
//! `--owed` deliveries owed in all (published x audience, less received).

mod proto;
mod run;
mod tally;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use proto::Dialect;

use crate::args::Given;
use crate::config::check_secs;
use crate::report::{json_str, Json};
use crate::stats::ErrKind;
use crate::sys::raise_nofile;
use crate::target::{parse_target, Target};
use run::{Outcome, Runner};
use tally::verdict;

/// `go_ns` value that means "setup failed: stop".
const ABORT: u64 = u64::MAX;

/// A pubsub run, validated.
#[derive(Debug)]
pub struct PubsubCfg {
    pub target: Target,
    pub dialect: Dialect,
    pub subs: u64,
    pub rooms: u32,
    pub pubs: u32,
    /// Payload bytes per publish.
    pub size: usize,
    /// Publishes per second in all; 0 = as fast as the windows allow.
    pub rate: f64,
    /// Unacked publishes per publisher, at most.
    pub window: u32,
    /// Deliveries owed, at most.
    pub owed: u64,
    pub secs: f64,
    pub warmup: f64,
    pub threads: usize,
    pub sources: u32,
    /// Makes room names unique to this run (the process id).
    pub tag: u32,
}

fn range<T: PartialOrd + std::fmt::Display>(n: &str, v: T, lo: T, hi: T) -> Result<T, String> {
    if v < lo || v > hi {
        return Err(format!("--{n} must be between {lo} and {hi} (got {v})"));
    }
    Ok(v)
}

impl PubsubCfg {
    pub fn from_given(a: &Given) -> Result<PubsubCfg, String> {
        let url = a.required("url")?;
        let tcp = url.to_ascii_lowercase().starts_with("tcp://");
        let target = parse_target(&url, if tcp { "tcp" } else { "ws" })?;
        if target.tls {
            return Err(format!("URL {url:?}: pubsub does not speak wss:// (TLS)"));
        }
        let dialect = match (tcp, a.switch("binary")) {
            (true, true) => return Err("--binary is for ws:// targets".into()),
            (true, false) => Dialect::Tcp,
            (false, true) => Dialect::Binary,
            (false, false) => Dialect::Json,
        };
        let subs: u64 = range("subs", a.num("subs")?, 1, 1_000_000)?;
        let rooms: u32 = range("rooms", a.num("rooms")?, 1, 1_000_000)?;
        if u64::from(rooms) > subs {
            return Err(format!("--rooms ({rooms}) must not exceed --subs ({subs})"));
        }
        let pubs: u32 = range("pubs", a.num("pubs")?, 1, 10_000)?;
        let min = if dialect == Dialect::Json { 16 } else { 8 };
        let size = a.num("size")?;
        if size < min {
            return Err(format!("--size must be at least {min} (the payload carries a timestamp)"));
        }
        let size = range("size", size, min, 60_000)?;
        let rate: f64 = a.num("rate")?;
        if !rate.is_finite() || rate < 0.0 {
            return Err(format!("--rate must be >= 0 (got {rate})"));
        }
        let window = range("window", a.num("window")?, 1, 1_000_000)?;
        let owed = range("owed", a.num_or("owed", (16 * subs).max(65_536))?, 1, u64::MAX)?;
        let secs = check_secs("secs", a.num("secs")?, false)?;
        let warmup = check_secs("warmup", a.num("warmup")?, true)?;
        let threads = range("threads", a.num("threads")?, 1, 64)?;
        let conns = subs + u64::from(pubs);
        let sources =
            range("sources", a.num_or("sources", conns.div_ceil(20_000) as u32 + 1)?, 0, 254)?;
        Ok(PubsubCfg {
            target,
            dialect,
            subs,
            rooms,
            pubs,
            size,
            rate,
            window,
            owed,
            secs,
            warmup,
            threads: threads.min(subs as usize),
            sources,
            tag: std::process::id(),
        })
    }

    /// The name of room `r`: unique to this run, so a server that already
    /// had rooms starts this run's at `seq` 1.
    pub fn room_name(&self, r: u32) -> String {
        format!("bench{}-{r}", self.tag)
    }
}

/// Deliveries one thread has received (its own cache line).
#[derive(Default)]
#[repr(align(128))]
pub struct PerThread {
    pub delivered: AtomicU64,
}

/// What the threads share.
pub struct Shared {
    pub pubs: Vec<PerThread>,
    pub subscribed: AtomicU64,
    pub pubs_ready: AtomicU64,
    pub setup_failed: AtomicU64,
    /// ns since start at which publishing began; 0 = not yet; [`ABORT`].
    pub go_ns: AtomicU64,
    /// Thread 0 says: the drain is over, close.
    pub stop: AtomicBool,
}

/// Runs `wsedge-bench pubsub`.
pub fn run_pubsub(cfg: PubsubCfg) -> ExitCode {
    let cfg = Arc::new(cfg);
    let limit = raise_nofile();
    let need = cfg.subs + u64::from(cfg.pubs) + 64;
    if limit > 0 && need > limit {
        eprintln!("wsedge-bench: warning: open-file limit is {limit}, this run needs {need}");
    }
    let shared = Arc::new(Shared {
        pubs: (0..cfg.threads).map(|_| PerThread::default()).collect(),
        subscribed: AtomicU64::new(0),
        pubs_ready: AtomicU64::new(0),
        setup_failed: AtomicU64::new(0),
        go_ns: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let start = Instant::now();
    let mut handles = Vec::new();
    for id in 0..cfg.threads {
        let runner = match Runner::new(cfg.clone(), id, shared.clone(), start) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("wsedge-bench: {e}");
                return ExitCode::FAILURE;
            }
        };
        let h =
            std::thread::Builder::new().name(format!("pubsub-{id}")).spawn(move || runner.run());
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("wsedge-bench: cannot start thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let mut next = 1u64;
    let mut last = 0u64;
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
        let el = start.elapsed();
        if el.as_secs() >= next {
            let got: u64 = shared.pubs.iter().map(|p| p.delivered.load(Ordering::Relaxed)).sum();
            if el > Duration::from_secs(3) {
                eprintln!(
                    "[{next:>4}s] subscribed {:>7} | {:>9} deliveries/s (last 1 s)",
                    shared.subscribed.load(Ordering::Relaxed),
                    got - last.min(got)
                );
            }
            last = got;
            next += 1;
        }
    }
    let mut outs = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(o)) => outs.push(o),
            Ok(Err(e)) => {
                eprintln!("wsedge-bench: thread failed: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!("wsedge-bench: thread panicked");
                return ExitCode::FAILURE;
            }
        }
    }
    report(&cfg, outs)
}

fn report(cfg: &PubsubCfg, mut outs: Vec<Outcome>) -> ExitCode {
    let mut o = outs.remove(0);
    for x in outs {
        o.st.merge(x.st);
        o.delivered_win += x.delivered_win;
        o.delivered_all += x.delivered_all;
        o.tallies.extend(x.tallies);
        o.win_secs = o.win_secs.max(x.win_secs);
    }
    let st = &o.st;
    let v = verdict(&o.tallies, &o.published);
    let secs = o.win_secs;
    let per = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let (dps, pps) = (per(o.delivered_win), per(o.published_win));
    let h = &st.lat;
    let q = |x: f64| if h.is_empty() { 0 } else { h.value_at_quantile(x) };
    let (p50, p90, p99, p999, max) = (q(0.5), q(0.9), q(0.99), q(0.999), h.max());
    let errors = st.errors();
    let dialect = match cfg.dialect {
        Dialect::Json => "json",
        Dialect::Binary => "binary",
        Dialect::Tcp => "tcp",
    };
    let rate = if cfg.rate > 0.0 { format!("{:.0}/s", cfg.rate) } else { "max".into() };
    let url = &cfg.target.url;
    println!("== wsedge-bench pubsub {url} ==");
    println!(
        "setup         {} subscribers in {} rooms, {} publishers; all subscribed at {:.3} s; threads {}",
        cfg.subs,
        cfg.rooms,
        cfg.pubs,
        o.go_ns as f64 / 1e9,
        cfg.threads
    );
    println!(
        "load          {} B {dialect} publishes, rate {rate}, window {} unacked per publisher, {} deliveries owed at most, warmup {:.1} s",
        cfg.size, cfg.window, cfg.owed, cfg.warmup
    );
    println!("measured      {secs:.3} s");
    println!(
        "throughput    {dps:.0} deliveries/s, {pps:.0} publishes/s ({} deliveries, {} publishes in the window)",
        o.delivered_win, o.published_win
    );
    println!("latency us    p50 {p50}  p90 {p90}  p99 {p99}  p99.9 {p999}  max {max}  (publish -> delivery)");
    println!(
        "accounting    {} published, {} refused; {} deliveries expected, {} received: {} missing, {} duplicated, {} out of order, {} unexpected; {} rooms with loss",
        o.published_all,
        o.publish_errors,
        v.expected,
        v.received,
        v.missing,
        v.duplicates,
        v.out_of_order,
        v.unexpected,
        v.rooms_with_loss
    );
    if o.owed_end > 0 || o.unacked_end > 0 {
        println!(
            "drain         ended with {} deliveries and {} acks still owed",
            o.owed_end, o.unacked_end
        );
    }
    for k in ErrKind::ALL {
        let n = st.errs[k as usize];
        if n > 0 {
            let first = st.first[k as usize].as_deref().unwrap_or("");
            println!("errors        {n} {}: first: {first}", k.name());
        }
    }
    println!(
        "bench cpu     {:.2} s, busiest thread {:.0}% of a core; {} reads, {} writes, {} polls",
        st.cpu_s,
        st.busy_max * 100.0,
        st.reads,
        st.writes,
        st.polls
    );
    if st.busy_max > 0.9 {
        eprintln!("wsedge-bench: warning: a load thread was {:.0}% busy: the load tester may be the limit; try --threads", st.busy_max * 100.0);
    }
    println!(
        "SUMMARY pubsub subs={} rooms={} pubs={} deliveries_per_sec={dps:.0} publishes_per_sec={pps:.0} p50_us={p50} p99_us={p99} missing={} duplicates={} out_of_order={} errors={errors}",
        cfg.subs, cfg.rooms, cfg.pubs, v.missing, v.duplicates, v.out_of_order
    );
    let mut kinds = String::from("{");
    for k in ErrKind::ALL {
        if kinds.len() > 1 {
            kinds.push(',');
        }
        kinds.push_str(&format!("\"{}\":{}", k.name(), st.errs[k as usize]));
    }
    kinds.push('}');
    let first = ErrKind::ALL
        .iter()
        .find_map(|&k| st.first[k as usize].as_deref())
        .map_or("null".to_string(), json_str);
    let mut j = Json::new("pubsub");
    j.s("url", url)
        .s("dialect", dialect)
        .u("subs", cfg.subs)
        .u("rooms", u64::from(cfg.rooms))
        .u("pubs", u64::from(cfg.pubs))
        .u("size", cfg.size as u64)
        .f("rate", cfg.rate, 1)
        .u("window", u64::from(cfg.window))
        .u("owed", cfg.owed)
        .u("threads", cfg.threads as u64)
        .f("warmup", cfg.warmup, 3)
        .f("secs", secs, 3)
        .u("deliveries", o.delivered_win)
        .u("publishes", o.published_win)
        .f("deliveries_per_sec", dps, 1)
        .f("publishes_per_sec", pps, 1)
        .u("p50_us", p50)
        .u("p90_us", p90)
        .u("p99_us", p99)
        .u("p999_us", p999)
        .u("max_us", max)
        .f("mean_us", if h.is_empty() { 0.0 } else { h.mean() }, 1)
        .u("published_all", o.published_all)
        .u("publish_errors", o.publish_errors)
        .u("expected", v.expected)
        .u("received", v.received)
        .u("missing", v.missing)
        .u("duplicates", v.duplicates)
        .u("out_of_order", v.out_of_order)
        .u("unexpected", v.unexpected)
        .u("rooms_with_loss", v.rooms_with_loss)
        .u("owed_end", o.owed_end)
        .u("unacked_end", o.unacked_end)
        .u("errors", errors)
        .raw("error_kinds", &kinds)
        .f("cpu_s", st.cpu_s, 3)
        .f("busy_max_pct", st.busy_max * 100.0, 1)
        .u("reads", st.reads)
        .u("writes", st.writes)
        .u("polls", st.polls)
        .raw("first_error", &first);
    println!("{}", j.finish());
    if o.delivered_win > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("wsedge-bench: nothing measured: no delivery in the measurement window");
        ExitCode::FAILURE
    }
}
