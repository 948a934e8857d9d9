//! Processes and cores: pinning with `taskset`, the server child process, CPU time from
//! `/proc`.
//!
//! The benchmark binary plays every part. Run plainly, it re-executes itself under
//! `taskset -c CLIENT_CPU` (the load generator's core) and, from there, starts each server as
//! another copy of itself under `taskset -c SERVER_CPU` with `--role NAME`. A server child
//! prints `READY <address>` on stdout once it listens, and shuts down when its stdin closes, so
//! it never outlives the benchmark.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The core every server runs on, and the core of the load generator and panels.
pub const SERVER_CPU: usize = 0;
pub const CLIENT_CPU: usize = 1;

/// Set in the environment of the re-executed, pinned benchmark.
const PINNED_ENV: &str = "PORCHLIGHT_BENCH_PINNED";

/// The `--role NAME` a server child was started with, if this process is one.
pub fn role(args: &[String]) -> Option<&str> {
    let at = args.iter().position(|arg| arg == "--role")?;
    args.get(at + 1).map(String::as_str)
}

fn require_taskset() -> anyhow::Result<()> {
    match Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => bail!(
            "`taskset` is needed to pin the servers and the load generator to their cores \
             (Debian package util-linux)"
        ),
    }
}

/// Makes sure this process runs pinned to [`CLIENT_CPU`]: if it is not yet, runs a pinned copy
/// of itself and returns its exit code (the caller returns it from `main`); `None` once pinned.
pub fn pin_client() -> Option<ExitCode> {
    let pinned = || -> anyhow::Result<Option<ExitCode>> {
        require_taskset()?;
        if std::env::var_os(PINNED_ENV).is_some() {
            let allowed = allowed_cpus("self")?;
            if allowed != CLIENT_CPU.to_string() {
                bail!("expected to run on core {CLIENT_CPU}, but may run on {allowed}");
            }
            return Ok(None);
        }
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        if usable < 2 {
            bail!(
                "needs cores {SERVER_CPU} and {CLIENT_CPU} (one for the server, one for the \
                 load); this process may use {usable}"
            );
        }
        let exe = std::env::current_exe().context("path of the benchmark binary")?;
        let status = Command::new("taskset")
            .arg("-c")
            .arg(CLIENT_CPU.to_string())
            .arg(exe)
            .args(std::env::args_os().skip(1))
            .env(PINNED_ENV, "1")
            .status()
            .context("running the pinned benchmark")?;
        Ok(Some(match status.code() {
            Some(0) => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }))
    };
    match pinned() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            Some(ExitCode::FAILURE)
        }
    }
}

/// `Cpus_allowed_list` of a process (`"self"` or a pid).
pub fn allowed_cpus(pid: &str) -> anyhow::Result<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
        .context("no Cpus_allowed_list in /proc/PID/status")
}

/// Clock ticks per second of the `/proc` CPU times.
pub fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User plus system CPU seconds a process (all its threads) has used: `"self"` or a pid.
pub fn cpu_seconds(pid: &str, ticks: f64) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')').context("malformed /proc/PID/stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// Busy, stolen and total ticks of one core, from `/proc/stat`.
pub fn core_ticks(cpu: usize) -> anyhow::Result<(u64, u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let label = format!("cpu{cpu} ");
    let line = stat
        .lines()
        .find(|line| line.starts_with(&label))
        .with_context(|| format!("no {label}line in /proc/stat"))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|value| value.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    let steal = values.get(7).copied().unwrap_or(0);
    Ok((total - idle, steal, total))
}

/// CPU use over a window: of a server process, of this process, and of the server's core.
pub struct CpuWindow {
    ticks: f64,
    server_pid: String,
    started: Instant,
    server: f64,
    client: f64,
    core: (u64, u64, u64),
    client_core: (u64, u64, u64),
}

/// What a [`CpuWindow`] saw, as fractions of one core.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub seconds: f64,
    pub server: f64,
    pub client: f64,
    /// Everything that ran on the server's core (the server, interrupts, other processes, and
    /// time the hypervisor gave to other machines).
    pub server_core: f64,
    /// Time the hypervisor took from the server's core.
    pub steal: f64,
    /// Time the hypervisor took from the client's core.
    pub client_steal: f64,
}

impl CpuUse {
    /// A warning if this window did not measure a saturated server alone on its core
    /// (`saturated`: the server should have used all of its core).
    pub fn warning(&self, saturated: bool) -> Option<String> {
        let mut problems = Vec::new();
        if saturated && self.server < 0.9 {
            problems.push(format!(
                "the server used only {:.0}% of its core (load generator at {:.0}% of its own)",
                100.0 * self.server,
                100.0 * self.client
            ));
        }
        if self.server_core - self.server > 0.1 {
            problems.push(format!(
                "{:.0}% of core {SERVER_CPU} went elsewhere ({:.0}% stolen by the hypervisor)",
                100.0 * (self.server_core - self.server),
                100.0 * self.steal
            ));
        }
        if self.client_steal > 0.1 {
            problems.push(format!(
                "the hypervisor stole {:.0}% of core {CLIENT_CPU}",
                100.0 * self.client_steal
            ));
        }
        (!problems.is_empty()).then(|| format!("WARNING: {}", problems.join("; ")))
    }
}

impl CpuWindow {
    pub fn start(server_pid: u32) -> anyhow::Result<CpuWindow> {
        let ticks = clock_ticks();
        let server_pid = server_pid.to_string();
        Ok(CpuWindow {
            server: cpu_seconds(&server_pid, ticks)?,
            client: cpu_seconds("self", ticks)?,
            core: core_ticks(SERVER_CPU)?,
            client_core: core_ticks(CLIENT_CPU)?,
            started: Instant::now(),
            ticks,
            server_pid,
        })
    }

    pub fn finish(&self) -> anyhow::Result<CpuUse> {
        let seconds = self.started.elapsed().as_secs_f64();
        let server = cpu_seconds(&self.server_pid, self.ticks)? - self.server;
        let client = cpu_seconds("self", self.ticks)? - self.client;
        let (busy, steal, total) = core_ticks(SERVER_CPU)?;
        let total = ((total - self.core.2) as f64).max(1.0);
        let (_, client_steal, client_total) = core_ticks(CLIENT_CPU)?;
        let client_total = ((client_total - self.client_core.2) as f64).max(1.0);
        Ok(CpuUse {
            seconds,
            server: server / seconds,
            client: client / seconds,
            server_core: (busy - self.core.0) as f64 / total,
            steal: (steal - self.core.1) as f64 / total,
            client_steal: (client_steal - self.client_core.1) as f64 / client_total,
        })
    }
}

/// A server running in a child process pinned to [`SERVER_CPU`].
pub struct ServerProcess {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ServerProcess {
    /// Starts this binary with `--role ROLE` and `args`, pinned, and waits for its address.
    pub fn start(role: &str, args: &[&str]) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("path of the benchmark binary")?;
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(SERVER_CPU.to_string())
            .arg(exe)
            .arg("--role")
            .arg(role)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {role} server"))?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = ServerProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            child,
            stdin,
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow::anyhow!("the {role} server did not start within 60s"))?;
        let addr = line
            .trim()
            .strip_prefix("READY ")
            .with_context(|| format!("the {role} server said {line:?} instead of READY"))?;
        server.addr = addr.parse().with_context(|| format!("address {addr:?}"))?;
        let allowed = allowed_cpus(&pid.to_string())?;
        if allowed != SERVER_CPU.to_string() {
            bail!("the {role} server may run on cores {allowed}, not only {SERVER_CPU}");
        }
        Ok(server)
    }

    /// Closes the child's stdin (its signal to shut down) and waits for it to exit.
    /// Stops the server process (`SIGSTOP`) until [`ServerProcess::resume`]: its background
    /// tasks then cannot run while another server on the same core is measured.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused server run again (`SIGCONT`); harmless if it runs.
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid.to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {signal} {} failed: {status}", self.pid);
        }
        Ok(())
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        // A paused server could not see its stdin close.
        let _ = self.resume();
        self.stdin.take();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status}");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the server did not stop within 20s; killed it");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Only reached on an error path (stop() consumes the child normally).
        if self.stdin.take().is_some() || matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
