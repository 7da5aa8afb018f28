//! What the benches that run deflect as a process read about it, and the port they give it. Each
//! bench includes what it needs with `mod support;` (a directory, so cargo takes it for no bench of
//! its own).

#![allow(dead_code)]

/// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`...); `pid` may be `"self"`. 0 when
/// unreadable.
pub fn status_kib(pid: impl std::fmt::Display, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory, KiB.
pub fn rss_kib(pid: impl std::fmt::Display) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// utime + stime of a process, in clock ticks (USER_HZ, 100 a second): after the command's closing
/// parenthesis, fields 14 and 15 of `/proc/PID/stat`.
pub fn cpu_ticks(pid: impl std::fmt::Display) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// The same as a duration.
pub fn cpu_time(pid: impl std::fmt::Display) -> std::time::Duration {
    std::time::Duration::from_millis(cpu_ticks(pid) * 10)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
