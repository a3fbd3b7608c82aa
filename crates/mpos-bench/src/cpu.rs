//! Where the machine's CPU went during a measured window, per program: the CPU time of every
//! process (user + system, threads included) from `/proc/<pid>/stat`, grouped by the
//! program's name, and the machine's busy time from `/proc/stat` (which also counts the
//! kernel's own work, such as loopback networking in soft interrupts, that no process is
//! charged for). Divided by the payments of the window, it says how many milliseconds of CPU
//! one payment costs and which process spends them: a figure that, unlike the throughput,
//! hardly moves with the machine's noise.

use std::collections::HashMap;

use procfs::CurrentSI as _;

/// CPU ticks per process and for the machine, at one instant.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    /// pid → (program name, user + system ticks).
    processes: HashMap<i32, (String, u64)>,
    /// Ticks the machine's CPUs were not idle (user, nice, system, irq, softirq, steal).
    busy: u64,
}

/// CPU seconds spent during a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuSpent {
    /// Per program name, most first.
    pub programs: Vec<(String, f64)>,
    /// The whole machine, not idle.
    pub machine: f64,
}

impl CpuSpent {
    /// The seconds of the programs whose name is in `names`, summed.
    pub fn of(&self, names: &[&str]) -> f64 {
        self.programs
            .iter()
            .filter(|(name, _)| names.contains(&name.as_str()))
            .map(|(_, seconds)| seconds)
            .sum()
    }
}

/// The CPU time of every process now (processes that cannot be read are left out).
pub fn snapshot() -> CpuSnapshot {
    let mut processes = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.flatten() {
            if let Ok(stat) = process.stat() {
                processes.insert(stat.pid, (stat.comm, stat.utime + stat.stime));
            }
        }
    }
    let busy = procfs::KernelStats::current()
        .map(|stats| {
            let total = stats.total;
            total.user
                + total.nice
                + total.system
                + total.irq.unwrap_or(0)
                + total.softirq.unwrap_or(0)
                + total.steal.unwrap_or(0)
        })
        .unwrap_or(0);
    CpuSnapshot { processes, busy }
}

/// What was spent between two snapshots. A process that started in between counts from
/// zero; one that ended in between is lost (its time is still in the machine's figure).
pub fn spent(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuSpent {
    #[allow(clippy::cast_precision_loss)]
    let ticks = procfs::ticks_per_second().max(1) as f64;
    let mut programs: HashMap<&str, u64> = HashMap::new();
    for (pid, (name, now)) in &after.processes {
        let earlier = before
            .processes
            .get(pid)
            .filter(|(was, _)| was == name)
            .map_or(0, |(_, ticks)| *ticks);
        *programs.entry(name.as_str()).or_default() += now.saturating_sub(earlier);
    }
    #[allow(clippy::cast_precision_loss)]
    let mut programs: Vec<(String, f64)> = programs
        .into_iter()
        .filter(|(_, used)| *used > 0)
        .map(|(name, used)| (name.to_owned(), used as f64 / ticks))
        .collect();
    programs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    #[allow(clippy::cast_precision_loss)]
    let machine = after.busy.saturating_sub(before.busy) as f64 / ticks;
    CpuSpent { programs, machine }
}

/// "name 1.23, other 0.45" (milliseconds per unit), the `top` programs then the rest summed.
pub fn per_unit(spent: &CpuSpent, units: usize, top: usize) -> String {
    if units == 0 {
        return "no units".into();
    }
    #[allow(clippy::cast_precision_loss)]
    let per = |seconds: f64| seconds * 1_000.0 / units as f64;
    let mut parts: Vec<String> = spent
        .programs
        .iter()
        .take(top)
        .map(|(name, seconds)| format!("{name} {:.2}", per(*seconds)))
        .collect();
    let rest: f64 = spent.programs.iter().skip(top).map(|(_, s)| s).sum();
    if rest > 0.0 {
        parts.push(format!("others {:.2}", per(rest)));
    }
    parts.push(format!("machine {:.2}", per(spent.machine)));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_spending_cpu_is_seen_under_its_name() {
        let before = snapshot();
        let started = std::time::Instant::now();
        let mut x = 0_u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = snapshot();
        let me = procfs::process::Process::myself()
            .and_then(|p| p.stat())
            .map(|s| s.comm)
            .unwrap_or_default();
        let spent = spent(&before, &after);
        let mine = spent.of(&[me.as_str()]);
        assert!(
            (0.15..=0.6).contains(&mine),
            "{me} spent {mine} s of 0.3 s busy"
        );
        assert!(spent.machine >= mine * 0.5, "{spent:?}");
        assert!(per_unit(&spent, 3, usize::MAX).contains(&format!("{me} ")));
    }

    #[test]
    fn programs_are_grouped_and_new_processes_count_from_zero() {
        let before = CpuSnapshot {
            processes: HashMap::from([
                (1, ("postgres".into(), 100)),
                (2, ("postgres".into(), 50)),
                (3, ("routing".into(), 10)),
                (6, ("tansu".into(), 40)),
            ]),
            busy: 1_000,
        };
        let after = CpuSnapshot {
            processes: HashMap::from([
                (1, ("postgres".into(), 130)),
                (2, ("postgres".into(), 60)),
                (3, ("routing".into(), 10)),
                // Started in the window: counts from zero.
                (4, ("postgres".into(), 5)),
                (5, ("nats-server".into(), 7)),
                // The pid of an ended process, reused by another program: from zero too.
                (6, ("acquirer-sim".into(), 3)),
            ]),
            busy: 1_100,
        };
        let spent = spent(&before, &after);
        let ticks = procfs::ticks_per_second() as f64;
        assert_eq!(
            spent.programs,
            vec![
                ("postgres".to_owned(), 45.0 / ticks),
                ("nats-server".to_owned(), 7.0 / ticks),
                ("acquirer-sim".to_owned(), 3.0 / ticks),
            ]
        );
        assert_eq!(spent.machine, 100.0 / ticks);
    }
}
