//! Server memory per open visitor chat socket.
//!
//! Porchlight runs in a child process pinned to core 0 (one Tokio worker thread). This process,
//! pinned to core 1, makes `BENCH_SOCKETS` (10 000) visitors live (a page view beacon each) and
//! registers their chat credentials, closes those HTTP connections and lets the server settle;
//! then reads the server's VmRSS (`/proc/PID/status`) and the kernel's socket figures
//! (`/proc/net/sockstat`, `/proc/meminfo` Slab), so that what the visitors themselves cost is
//! not counted. Then it opens every visitor's WebSocket (`hello` → `ready`, the minimal client
//! of `support/ws.rs`), measuring once half are open and again once all are open and idle.
//!
//! B = (VmRSS after - VmRSS before) / N; the growth over the second half alone is printed too
//! (no one-off costs in it). The kernel's TCP buffer memory and socket slabs count both ends of
//! every loopback connection (this process's too) and other activity on the machine; they are
//! printed for context, with an inclusive figure that adds half of them.
//!
//! Both processes need N + a few hundred open files (`ulimit -n`; `benches/run` raises the
//! soft limit to the hard one).
//!
//! Headline: `bytes_per_socket B (N sockets)`.

#[path = "support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use support::chat::{self, ChatVisitor};
use support::procs::{CLIENT_CPU, SERVER_CPU, ServerProcess};
use support::ws::Panel;

/// Requests or socket openings in flight at once.
const CONCURRENCY: usize = 64;
/// The client's receive buffer per socket (its own memory, not measured).
const SOCKET_BUFFER: usize = 4 * 1024;
/// Time given to the server to settle before each measurement.
const SETTLE: Duration = Duration::from_secs(2);

/// The same allocator as the `porchlight` binary, for the server role this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(role) = support::procs::role(&args) {
        return support::servers::run(role, &args);
    }
    if let Some(code) = support::procs::pin_client() {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bytes_per_socket: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let sockets = support::env_number("BENCH_SOCKETS", 10_000)?.max(2) as usize;
    let needed = sockets as u64 + 256;
    let limit = chat::open_files_limit()?;
    if limit < needed {
        bail!(
            "{sockets} sockets need about {needed} open files in this process and in the server, \
             but the limit is {limit}: raise it (`ulimit -n {needed}`)"
        );
    }
    println!(
        "bytes_per_socket: server on core {SERVER_CPU} (1 worker thread); {sockets} visitor \
         sockets from core {CLIENT_CPU}; open files limit {limit}"
    );
    let server = ServerProcess::start("porchlight-server", &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(bench(&server, sockets));
    drop(runtime);
    let stopped = server.stop();
    result?;
    stopped
}

/// What the server and the kernel hold at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    rss: u64,
    /// Open file descriptors of the server.
    fds: u64,
    tcp_inuse: u64,
    /// TCP buffer memory, bytes.
    tcp_mem: u64,
    /// All kernel slab memory, bytes.
    slab: u64,
}

fn sample(pid: u32) -> anyhow::Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading the server's /proc/PID/status")?;
    let rss = kib_field(&status, "VmRSS:").context("no VmRSS")? * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .context("listing the server's fds")?
        .count() as u64;
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").context("/proc/net/sockstat")?;
    let tcp: Vec<&str> = sockstat
        .lines()
        .find(|line| line.starts_with("TCP:"))
        .context("no TCP line in /proc/net/sockstat")?
        .split_whitespace()
        .collect();
    let field = |name: &str| -> anyhow::Result<u64> {
        let at = tcp
            .iter()
            .position(|word| *word == name)
            .with_context(|| format!("no {name} in sockstat"))?;
        Ok(tcp.get(at + 1).context("sockstat value")?.parse()?)
    };
    let page = page_size();
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("/proc/meminfo")?;
    Ok(Sample {
        rss,
        fds,
        tcp_inuse: field("inuse")?,
        tcp_mem: field("mem")? * page,
        slab: kib_field(&meminfo, "Slab:").unwrap_or(0) * 1024,
    })
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn page_size() -> u64 {
    std::process::Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(4096)
}

async fn open_all(
    addr: std::net::SocketAddr,
    visitors: &Arc<Vec<ChatVisitor>>,
    range: std::ops::Range<usize>,
) -> anyhow::Result<Vec<Panel>> {
    let offset = range.start;
    chat::bounded(range.len(), CONCURRENCY, |index| {
        let visitors = Arc::clone(visitors);
        async move { chat::open_socket(addr, &visitors[offset + index], SOCKET_BUFFER).await }
    })
    .await
}

async fn bench(server: &ServerProcess, count: usize) -> anyhow::Result<()> {
    let addr = server.addr;
    let started = Instant::now();
    let visitors = chat::prepare(addr, chat::visitors(count, 0x050c_04e7), CONCURRENCY).await?;
    println!(
        "bytes_per_socket: {count} visitors live with credentials after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let visitors = Arc::new(visitors);
    // `prepare`'s client is gone, so are its connections; let the server notice.
    tokio::time::sleep(SETTLE).await;
    let before = sample(server.pid)?;

    let half = count / 2;
    let started = Instant::now();
    let mut sockets = open_all(addr, &visitors, 0..half).await?;
    tokio::time::sleep(SETTLE).await;
    let middle = sample(server.pid)?;
    sockets.extend(open_all(addr, &visitors, half..count).await?);
    let opened = started.elapsed().as_secs_f64() - SETTLE.as_secs_f64();
    tokio::time::sleep(SETTLE).await;
    let after = sample(server.pid)?;
    println!(
        "bytes_per_socket: {} sockets open and idle (opened in {opened:.1}s)",
        sockets.len()
    );
    for socket in sockets {
        socket.close().await;
    }

    let n = count as f64;
    let per = |from: u64, to: u64, over: usize| (to as f64 - from as f64) / over as f64;
    println!(
        "server VmRSS: {:.1} MB before, {:.1} MB with {half} sockets, {:.1} MB with {count} \
         (+{:.1} MB); {:.0} B per socket overall, {:.0} B per socket over the second half",
        before.rss as f64 / 1e6,
        middle.rss as f64 / 1e6,
        after.rss as f64 / 1e6,
        (after.rss as f64 - before.rss as f64) / 1e6,
        per(before.rss, after.rss, count),
        per(middle.rss, after.rss, count - half),
    );
    println!(
        "server open fds: {} before, {} after (+{})",
        before.fds,
        after.fds,
        after.fds as i64 - before.fds as i64
    );
    let tcp_mem = after.tcp_mem as f64 - before.tcp_mem as f64;
    let slab = after.slab as f64 - before.slab as f64;
    println!(
        "kernel (whole machine, both ends of each loopback connection): TCP sockets in use {} \
         -> {} (+{}); TCP buffer memory {:.1} KB -> {:.1} KB ({:+.0} B per connection); slab \
         {:.1} MB -> {:.1} MB ({:+.0} B per connection)",
        before.tcp_inuse,
        after.tcp_inuse,
        after.tcp_inuse as i64 - before.tcp_inuse as i64,
        before.tcp_mem as f64 / 1e3,
        after.tcp_mem as f64 / 1e3,
        tcp_mem / n,
        before.slab as f64 / 1e6,
        after.slab as f64 / 1e6,
        slab / n,
    );
    let rss_per = (after.rss as f64 - before.rss as f64) / n;
    println!(
        "with the server's half of the kernel's share: {:.0} B per socket (RSS + TCP buffers / \
         2), {:.0} B per socket (RSS + (TCP buffers + slab) / 2)",
        rss_per + tcp_mem / n / 2.0,
        rss_per + (tcp_mem + slab) / n / 2.0,
    );
    println!();
    println!(
        "bytes_per_socket {} ({count} sockets)",
        (after.rss as i64 - before.rss as i64) / count as i64
    );
    Ok(())
}
