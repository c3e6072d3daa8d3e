//! What the process asks of the operating system: the open-file limit, the
//! CPU time of a thread, the kernel's listen-queue overflow counter. Every
//! `unsafe` call of the binary is here or in [`crate::net`].

/// Raises the soft open-file limit to the hard one; returns the soft limit
/// now in force (0 when it cannot be read).
pub fn raise_nofile() -> u64 {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return 0;
    }
    let target = if rl.rlim_max == libc::RLIM_INFINITY { 1 << 20 } else { rl.rlim_max };
    if rl.rlim_cur < target {
        let new = libc::rlimit { rlim_cur: target, rlim_max: rl.rlim_max };
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            rl.rlim_cur = target;
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
    let cur = rl.rlim_cur as u64;
    cur
}

/// CPU time (user + system) of the calling thread, seconds.
pub fn thread_cpu_secs() -> f64 {
    #[cfg(target_os = "linux")]
    let who = libc::RUSAGE_THREAD;
    #[cfg(not(target_os = "linux"))]
    let who = libc::RUSAGE_SELF;
    // SAFETY: rusage is plain old data (integers and timevals): all-zero bytes
    // are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusive pointer to a rusage we own; getrusage only
    // writes into it.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Host-wide count of TCP listen-queue overflows (`TcpExt: ListenOverflows`
/// in /proc/net/netstat); None where unavailable.
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(i)?.parse().ok()
}
