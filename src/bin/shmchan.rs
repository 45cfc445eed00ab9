//! `shmchan`: list, inspect, clean up and tail shmchan segments in `/dev/shm`.
//!
//! A thin front end over [`shmchan::inspect`] (which reads segments read-only) and the channel
//! consumers (for `tail`). Run `shmchan --help` for the commands and exit codes.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use shmchan::Error;
use shmchan::channel::{Consumer, Flavour, Mpmc, Mpsc, Options, Spsc, Unlink};
use shmchan::inspect::{self, Reclaim, SegmentInfo, SlotState};
use shmchan::layout::{Kind, Role};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (also: gc found nothing to remove, tail saw the channel close)
  1  error (a segment that is not a shmchan segment, permission denied, I/O, corrupt)
  2  usage (bad arguments)
  3  not found (no segment of that name)
  4  refused (tail on an spsc or mpsc channel whose consumer is alive, or on a heap)";

/// Operate shmchan segments: see what exists, who is attached and how full it is, remove
/// what crashed processes left behind, and watch a channel's messages.
#[derive(Debug, Parser)]
#[command(name = "shmchan", version, after_help = EXIT_CODES)]
struct Cli {
    /// Print JSON instead of text (one document; `tail` prints one object per line).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every shmchan segment in /dev/shm (recognised by its header, whatever its name), with
    /// kind, geometry, fill, participants and whether it is stale. Read-only.
    List {
        /// Only names starting with this (the leading '/' may be left out).
        #[arg(long, default_value = "/")]
        prefix: String,
    },
    /// Header fields, ring counters, participant records and the slots at the head of one
    /// segment. Read-only.
    Inspect {
        /// The segment's name (`/orders` or `orders`).
        name: String,
    },
    /// Remove stale segments (every participant and the creator dead), never a live one; say
    /// what was removed.
    Gc {
        /// Say what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only names starting with this (the leading '/' may be left out).
        #[arg(long, default_value = "/")]
        prefix: String,
    },
    /// Print messages as a consumer receives them (text when UTF-8, else hex). This consumes
    /// them: on spsc and mpsc channels it refuses (exit 4) while a live consumer is attached;
    /// on mpmc it competes with the other consumers.
    Tail {
        /// The channel's name (`/orders` or `orders`).
        name: String,
        /// Stop after this many messages.
        #[arg(short = 'n', long = "count")]
        count: Option<u64>,
        /// Stop when no message came for this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Bridge local channels through Zenoh (feature `zenoh`; see shmchan::bridge): peer mode,
    /// scouting off, only the --listen / --connect endpoints. Prints `ready` once attached,
    /// then one line per bridge as it ends; exit 0 if all ended cleanly, 1 otherwise.
    #[cfg(feature = "zenoh")]
    Bridge {
        /// Drain a local channel into a key expression: `/orders=svc/orders`.
        #[arg(long, value_name = "CHANNEL=KEY")]
        export: Vec<String>,
        /// Deliver a key expression into a local channel: `svc/replies=/replies`.
        #[arg(long, value_name = "KEY=CHANNEL")]
        import: Vec<String>,
        /// Answer queries on a key with a local endpoint (its side B): `svc/echo=/echo`.
        #[arg(long, value_name = "KEY=ENDPOINT")]
        serve: Vec<String>,
        /// Zenoh endpoint to connect to, e.g. `tcp/127.0.0.1:7447`.
        #[arg(long)]
        connect: Vec<String>,
        /// Zenoh endpoint to listen on, e.g. `tcp/127.0.0.1:7447`.
        #[arg(long)]
        listen: Vec<String>,
    },
}

/// A failure and the exit code it maps to.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

const REFUSED: u8 = 4;
const NOT_FOUND: u8 = 3;

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let code = match e {
            Error::NotFound(_) => NOT_FOUND,
            Error::InUse(_) => REFUSED,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { prefix } => list(&slash(&prefix), cli.json),
        Command::Inspect { name } => inspect_one(&slash(&name), cli.json),
        Command::Gc { dry_run, prefix } => gc(&slash(&prefix), dry_run, cli.json),
        Command::Tail {
            name,
            count,
            timeout,
        } => tail(&slash(&name), count, timeout, cli.json),
        #[cfg(feature = "zenoh")]
        Command::Bridge {
            export,
            import,
            serve,
            connect,
            listen,
        } => bridge([export, import, serve], connect, listen),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("shmchan: {}", shown(&f.message));
            ExitCode::from(f.code)
        }
    }
}

/// `orders` -> `/orders`.
fn slash(name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("/{name}")
    }
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).expect("JSON values serialise")
    );
}

// ---- list ----

fn list(prefix: &str, json: bool) -> Result<(), Failure> {
    let segs = inspect::list(prefix)?;
    if json {
        print_json(&Value::Array(segs.iter().map(summary_json).collect()));
        return Ok(());
    }
    if segs.is_empty() {
        println!("no shmchan segments{}", under(prefix));
        return Ok(());
    }
    let rows: Vec<[String; 6]> = segs
        .iter()
        .map(|s| {
            [
                shown(&s.name),
                s.kind_name().to_owned(),
                geometry_text(s),
                s.ring
                    .as_ref()
                    .map(|r| match r.pending {
                        Some(p) => format!("{p}/{}", r.capacity),
                        None => format!("?/{}", r.capacity),
                    })
                    .unwrap_or_else(|| "-".into()),
                status_text(s),
                participants_text(s),
            ]
        })
        .collect();
    let header = ["NAME", "KIND", "SLOTS", "PENDING", "STATUS", "PARTICIPANTS"];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s
    };
    println!("{}", line(header));
    for r in &rows {
        println!("{}", line(r.each_ref().map(String::as_str)));
    }
    Ok(())
}

fn under(prefix: &str) -> String {
    if prefix == "/" {
        String::new()
    } else {
        format!(" named {prefix}*")
    }
}

fn geometry_text(s: &SegmentInfo) -> String {
    if let Some(r) = &s.ring {
        format!("{}x{}", r.slot_size, r.capacity)
    } else if let Some(h) = &s.heap {
        format!("{}x{}", h.chunk_size, h.chunks)
    } else {
        "-".into()
    }
}

fn status_text(s: &SegmentInfo) -> String {
    if s.stale {
        "STALE".into()
    } else if s.header.state != inspect::HeaderState::Ready {
        s.header.state.name().into()
    } else if s.problem.is_some() {
        "unreadable".into()
    } else if s.has_live_participant() {
        "live".into()
    } else {
        // Nobody attached, but the creator runs: it may come back.
        "idle".into()
    }
}

fn participants_text(s: &SegmentInfo) -> String {
    if s.participants.is_empty() {
        return format!(
            "none (creator {} {})",
            s.header.creator.pid,
            alive_text(s.header.creator.alive)
        );
    }
    s.participants
        .iter()
        .map(|p| format!("{} {} {}", p.pid, p.role_name(), alive_text(p.alive)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alive_text(alive: bool) -> &'static str {
    if alive { "alive" } else { "dead" }
}

fn summary_json(s: &SegmentInfo) -> Value {
    json!({
        "name": s.name,
        "kind": s.kind_name(),
        "slot_size": s.ring.as_ref().map(|r| r.slot_size),
        "capacity": s.ring.as_ref().map(|r| r.capacity),
        "pending": s.ring.as_ref().and_then(|r| r.pending),
        "heap": s.heap.map(|h| json!({"chunk_size": h.chunk_size, "chunks": h.chunks})),
        "state": s.header.state.name(),
        "creator": {"pid": s.header.creator.pid, "alive": s.header.creator.alive},
        "participants": s.participants.iter().map(|p| json!({
            "pid": p.pid,
            "role": p.role_name(),
            "alive": p.alive,
        })).collect::<Vec<_>>(),
        "stale": s.stale,
        "problem": s.problem,
    })
}

/// `text` with its control characters escaped (`\u{1b}`): segment names come from
/// `/dev/shm`, where any user can make one that holds a terminal's escape sequences.
fn shown(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

// ---- inspect ----

fn inspect_one(name: &str, json: bool) -> Result<(), Failure> {
    let s = inspect::inspect(name)?;
    if json {
        print_json(&inspect_json(&s));
        return Ok(());
    }
    let h = &s.header;
    println!("segment      {}", shown(&s.name));
    println!("kind         {} ({})", s.kind_name(), h.kind.0);
    println!("status       {}", status_text(&s));
    println!(
        "size         {} bytes (layout {} bytes)",
        s.size, h.total_len
    );
    println!(
        "header       state {}, version {}, {} participant records",
        h.state.name(),
        h.version,
        h.participant_capacity
    );
    println!(
        "creator      pid {} {}",
        h.creator.pid,
        alive_text(h.creator.alive)
    );
    if let Some(p) = &s.problem {
        println!("problem      {p}");
    }
    if let Some(r) = &s.ring {
        println!(
            "geometry     slot size {}, capacity {}",
            r.slot_size, r.capacity
        );
        let pending = r
            .pending
            .map_or("? (positions out of range)".into(), |p| p.to_string());
        println!("tail / head  {} / {} (pending {pending})", r.tail, r.head);
        println!(
            "counters     producers {}, consumers {} (clean-close hints), flags {:#x}{}",
            r.producers,
            r.consumers,
            r.flags,
            flags_text(r.flags)
        );
        println!(
            "sleepers     consumers {}, producers {} (fenced mode: {}, {})",
            r.consumer_sleepers, r.producer_sleepers, r.consumer_fenced, r.producer_fenced
        );
        if !r.head_slots.is_empty() {
            let skipped = r
                .head_slots
                .iter()
                .filter(|x| matches!(x.state, SlotState::Abandoned | SlotState::Discarded))
                .count();
            println!(
                "head slots   {} ({skipped} abandoned or discarded)",
                r.head_slots
                    .iter()
                    .map(|x| format!("{}: {}", x.position, slot_text(x.state)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    } else if let Some(hp) = &s.heap {
        println!(
            "geometry     {} chunks of {} bytes (heap format {})",
            hp.chunks, hp.chunk_size, hp.format
        );
    } else {
        println!(
            "geometry     {}",
            h.geometry.map(|g| g.to_string()).join(" ")
        );
    }
    if s.participants.is_empty() {
        println!("participants none");
    }
    for p in &s.participants {
        println!(
            "participant  #{} pid {} {} {}, generation {}, intent {}, parked {}",
            p.index,
            p.pid,
            p.role_name(),
            alive_text(p.alive),
            p.generation,
            p.intent.map_or("none".into(), |i| format!("position {i}")),
            parked_text(p.parked)
        );
    }
    Ok(())
}

fn flags_text(flags: u32) -> String {
    let mut seen = Vec::new();
    if flags & 1 != 0 {
        seen.push("a producer attached");
    }
    if flags & 2 != 0 {
        seen.push("a consumer attached");
    }
    if seen.is_empty() {
        String::new()
    } else {
        format!(" ({})", seen.join(", "))
    }
}

fn parked_text(parked: u64) -> String {
    match parked {
        0 => "no".into(),
        1 => "futex".into(),
        2 => "doorbell".into(),
        n => format!("?{n}"),
    }
}

fn slot_text(s: SlotState) -> String {
    match s {
        SlotState::Message(n) => format!("message {n} B"),
        SlotState::Abandoned => "abandoned".into(),
        SlotState::Discarded => "discarded".into(),
        SlotState::Unpublished => "claimed, unpublished".into(),
        SlotState::Unexpected(seq) => format!("unexpected seq {seq}"),
    }
}

fn slot_json(s: SlotState) -> Value {
    match s {
        SlotState::Message(n) => json!({"state": "message", "len": n}),
        SlotState::Abandoned => json!({"state": "abandoned"}),
        SlotState::Discarded => json!({"state": "discarded"}),
        SlotState::Unpublished => json!({"state": "unpublished"}),
        SlotState::Unexpected(seq) => json!({"state": "unexpected", "seq": seq}),
    }
}

fn inspect_json(s: &SegmentInfo) -> Value {
    let h = &s.header;
    json!({
        "name": s.name,
        "kind": s.kind_name(),
        "kind_code": h.kind.0,
        "size": s.size,
        "stale": s.stale,
        "problem": s.problem,
        "header": {
            "state": h.state.name(),
            "version": h.version,
            "participant_capacity": h.participant_capacity,
            "total_len": h.total_len,
            "geometry": h.geometry,
            "creator": {"pid": h.creator.pid, "alive": h.creator.alive},
            "foreign_namespace": h.foreign_namespace,
        },
        "ring": s.ring.as_ref().map(|r| json!({
            "slot_size": r.slot_size,
            "capacity": r.capacity,
            "tail": r.tail,
            "head": r.head,
            "pending": r.pending,
            "flags": r.flags,
            "producers": r.producers,
            "consumers": r.consumers,
            "consumer_sleepers": r.consumer_sleepers,
            "producer_sleepers": r.producer_sleepers,
            "consumer_fenced": r.consumer_fenced,
            "producer_fenced": r.producer_fenced,
            "head_slots": r.head_slots.iter().map(|x| {
                let mut v = slot_json(x.state);
                v["position"] = json!(x.position);
                v
            }).collect::<Vec<_>>(),
        })),
        "heap": s.heap.map(|hp| json!({
            "format": hp.format, "chunk_size": hp.chunk_size, "chunks": hp.chunks,
        })),
        "participants": s.participants.iter().map(|p| json!({
            "index": p.index,
            "pid": p.pid,
            "role": p.role_name(),
            "alive": p.alive,
            "generation": p.generation,
            "intent": p.intent,
            "parked": parked_text(p.parked),
        })).collect::<Vec<_>>(),
    })
}

// ---- gc ----

fn gc(prefix: &str, dry_run: bool, json: bool) -> Result<(), Failure> {
    let mut results = Vec::new();
    let mut failed = None;
    for s in inspect::list(prefix)? {
        // Only stale ones are candidates; `reclaim` checks again on its own mapping.
        if !s.stale {
            continue;
        }
        match inspect::reclaim(&s.name, dry_run) {
            Ok(r) => results.push((s.name.clone(), r)),
            Err(e) => {
                eprintln!("shmchan: gc {}: {}", shown(&s.name), shown(&e.to_string()));
                failed = Some(Failure::from(e));
            }
        }
    }
    let action = |r: &Reclaim| match r {
        Reclaim::Removed(_) => "removed",
        Reclaim::WouldRemove(_) => "would remove",
        Reclaim::NotStale(_) => "kept (no longer stale)",
        Reclaim::Gone => "gone (removed by someone else)",
        Reclaim::Replaced => "kept (name reused by a new segment)",
    };
    if json {
        print_json(&json!({
            "dry_run": dry_run,
            "segments": results.iter().map(|(name, r)| json!({
                "name": name,
                "action": match r {
                    Reclaim::Removed(_) => "removed",
                    Reclaim::WouldRemove(_) => "would-remove",
                    Reclaim::NotStale(_) => "kept",
                    Reclaim::Gone => "gone",
                    Reclaim::Replaced => "replaced",
                },
                "detail": action(r),
            })).collect::<Vec<_>>(),
        }));
    } else if results.is_empty() {
        println!("no stale segments{}", under(prefix));
    } else {
        for (name, r) in &results {
            let why = match r {
                Reclaim::Removed(s) | Reclaim::WouldRemove(s) => format!(
                    " ({}, {})",
                    s.kind_name(),
                    s.problem.clone().unwrap_or_else(|| participants_text(s))
                ),
                _ => String::new(),
            };
            println!("{}: {}", action(r), shown(&format!("{name}{why}")));
        }
    }
    failed.map_or(Ok(()), Err)
}

// ---- tail ----

fn tail(name: &str, count: Option<u64>, timeout: Option<f64>, json: bool) -> Result<(), Failure> {
    let s = inspect::inspect(name)?;
    let timeout = match timeout {
        Some(t) if t.is_finite() && t >= 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(Failure {
                code: 2,
                message: format!("--timeout {t}: not a number of seconds"),
            });
        }
        None => None,
    };
    let refuse = |message: String| Failure {
        code: REFUSED,
        message,
    };
    let kind = s.header.kind;
    if matches!(kind, Kind::SPSC | Kind::MPSC) {
        let live: Vec<u32> = s
            .participants
            .iter()
            .filter(|p| p.role == Role::CONSUMER && p.alive)
            .map(|p| p.pid)
            .collect();
        if let Some(pid) = live.first() {
            return Err(refuse(format!(
                "{} channel '{name}' has a live consumer (pid {pid}); tail would take its \
                 messages. Refused.",
                s.kind_name()
            )));
        }
    }
    match kind {
        Kind::SPSC => run_tail::<Spsc>(name, count, timeout, json),
        Kind::MPSC => run_tail::<Mpsc>(name, count, timeout, json),
        Kind::MPMC => run_tail::<Mpmc>(name, count, timeout, json),
        _ => Err(refuse(format!(
            "'{name}' is a {} segment, not a channel: nothing to tail",
            s.kind_name()
        ))),
    }
}

fn run_tail<F: Flavour>(
    name: &str,
    count: Option<u64>,
    timeout: Option<Duration>,
    json: bool,
) -> Result<(), Failure> {
    // Never unlink: tail is a visitor, the channel's lifetime is its owners' business.
    let opts = Options::new().unlink(Unlink::Never);
    let mut rx = Consumer::<F>::open(name, opts).map_err(|e| match e {
        Error::InUse(m) => Failure {
            code: REFUSED,
            message: format!("{m}; refused"),
        },
        e => Failure::from(e),
    })?;
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    while count.is_none_or(|n| seen < n) {
        let msg = match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv_blocking(),
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e @ (Error::Closed | Error::PeerGone(_) | Error::TimedOut(_))) => {
                eprintln!("shmchan: tail {name}: stopped after {seen} messages: {e}");
                break;
            }
            Err(e) => return Err(e.into()),
        };
        let bytes: &[u8] = &msg;
        let line = match std::str::from_utf8(bytes) {
            Ok(text) if json => {
                json!({"index": seen, "len": bytes.len(), "text": text}).to_string()
            }
            Err(_) if json => {
                json!({"index": seen, "len": bytes.len(), "hex": hex(bytes)}).to_string()
            }
            Ok(text) => format!("#{seen} ({} B) {}", bytes.len(), text.escape_debug()),
            Err(_) => format!("#{seen} ({} B) hex {}", bytes.len(), hex(bytes)),
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            break; // stdout closed (`| head`): stop quietly
        }
        seen += 1;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `shmchan bridge`: parses the pairs and runs [`shmchan::bridge::run`].
#[cfg(feature = "zenoh")]
fn bridge(
    pairs: [Vec<String>; 3],
    connect: Vec<String>,
    listen: Vec<String>,
) -> Result<(), Failure> {
    use shmchan::bridge::{BridgeSpec, run, split_pair};
    let [export, import, serve] = pairs;
    let parse = |flag: &str, v: Vec<String>, fix: fn((String, String)) -> (String, String)| {
        v.iter()
            .map(|s| split_pair(flag, s).map(fix))
            .collect::<Result<Vec<_>, _>>()
    };
    let spec = BridgeSpec {
        exports: parse("--export", export, |(c, k)| (slash(&c), k))?,
        imports: parse("--import", import, |(k, c)| (k, slash(&c)))?,
        serves: parse("--serve", serve, |(k, c)| (k, slash(&c)))?,
        listen,
        connect,
    };
    let outcomes = run(&spec, Options::new(), || {
        println!("ready");
        let _ = std::io::stdout().flush();
    })?;
    for o in &outcomes {
        let how = match &o.ended {
            Ok(e) => format!("{e:?}"),
            Err(e) => format!("error: {e}"),
        };
        println!(
            "{}: {how}; forwarded {}, dropped {}",
            o.what, o.stats.forwarded, o.stats.dropped
        );
    }
    match outcomes.iter().all(|o| o.is_clean()) {
        true => Ok(()),
        false => Err(Failure {
            code: 1,
            message: "a bridge ended because a peer died or vanished".into(),
        }),
    }
}
