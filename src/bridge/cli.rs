//! What the `shmchan bridge` command runs: [`BridgeSpec`] and [`run`].

use std::time::Duration;

use zenoh::Wait;

use super::{Ended, Stats, export, import, peer_config, serve, zerr};
use crate::channel::{Consumer, Mpmc, Mpsc, Options, Producer, Spsc};
use crate::endpoint::{Endpoint, Side};
use crate::error::{Error, Result};
use crate::layout::Kind;

/// What one bridge process bridges, and how its Zenoh session meets the others.
#[derive(Debug, Clone, Default)]
pub struct BridgeSpec {
    /// Local channels to drain into Zenoh: (channel name, key expression).
    pub exports: Vec<(String, String)>,
    /// Key expressions to deliver into local channels: (key expression, channel name).
    pub imports: Vec<(String, String)>,
    /// Key expressions whose queries a local endpoint answers: (key expression, endpoint
    /// name; the bridge opens its side B).
    pub serves: Vec<(String, String)>,
    /// Endpoints to listen on, e.g. `tcp/127.0.0.1:7447`.
    pub listen: Vec<String>,
    /// Endpoints to connect to.
    pub connect: Vec<String>,
}

/// Splits `LEFT=RIGHT` (as in `--export /orders=svc/orders`), naming `flag` in the error.
pub fn split_pair(flag: &str, s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((l, r)) if !l.is_empty() && !r.is_empty() => Ok((l.to_owned(), r.to_owned())),
        _ => Err(Error::InvalidArgument(format!(
            "{flag} {s:?}: expected LEFT=RIGHT, e.g. /orders=svc/orders"
        ))),
    }
}

/// One bridge of a [`run`] and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// What it bridged, e.g. `export /orders -> svc/orders`.
    pub what: String,
    /// Why it ended, or the error that ended it.
    pub ended: Result<Ended>,
    /// What it counted.
    pub stats: Stats,
}

impl Outcome {
    /// Whether it ended cleanly: a close on either side, not a death or an error.
    pub fn is_clean(&self) -> bool {
        matches!(
            self.ended,
            Ok(Ended::LocalClosed | Ended::RemoteClosed | Ended::Stopped)
        )
    }
}

enum Handle {
    Export(super::Exporter),
    Import(super::Importer),
    Serve(super::Server),
}

impl Handle {
    fn is_finished(&self) -> bool {
        match self {
            Handle::Export(h) => h.is_finished(),
            Handle::Import(h) => h.is_finished(),
            Handle::Serve(h) => h.is_finished(),
        }
    }
    fn finish(self) -> (Result<Ended>, Stats) {
        match self {
            Handle::Export(h) => (h.stats(), h.join()),
            Handle::Import(h) => (h.stats(), h.join()),
            Handle::Serve(h) => (h.stats(), h.join()),
        }
        .swap()
    }
}

trait Swap<A, B> {
    fn swap(self) -> (B, A);
}
impl<A, B> Swap<A, B> for (A, B) {
    fn swap(self) -> (B, A) {
        (self.1, self.0)
    }
}

fn kind_of(name: &str) -> Result<Kind> {
    let info = crate::inspect::inspect(name)?;
    Ok(info.header.kind)
}

/// Runs a bridge process: opens a Zenoh session in peer mode with scouting off on
/// `spec.listen` / `spec.connect` (see [`peer_config`]), attaches to the local channels and
/// endpoints (which must exist; the flavour is read from each channel), calls `ready` once every
/// bridge runs, and returns when every bridge has ended, with how each ended.
///
/// The bridges end as [`export`], [`import`] and [`serve`] say; the process is meant to be
/// supervised: when a remote bridge dies, this one ends too ([`Ended::RemoteLost`]) and its
/// local sides see their channels close.
pub fn run(spec: &BridgeSpec, opts: Options, ready: impl FnOnce()) -> Result<Vec<Outcome>> {
    if spec.exports.is_empty() && spec.imports.is_empty() && spec.serves.is_empty() {
        return Err(Error::InvalidArgument(
            "bridge: nothing to bridge (give --export, --import or --serve)".into(),
        ));
    }
    if spec.listen.is_empty() && spec.connect.is_empty() {
        return Err(Error::InvalidArgument(
            "bridge: no endpoint (give --listen or --connect, e.g. tcp/127.0.0.1:7447); scouting is off"
                .into(),
        ));
    }
    let listen: Vec<&str> = spec.listen.iter().map(String::as_str).collect();
    let connect: Vec<&str> = spec.connect.iter().map(String::as_str).collect();
    let session = zenoh::open(peer_config(&listen, &connect)?)
        .wait()
        .map_err(|e| zerr("open session", e))?;
    let mut running = Vec::new();
    for (name, key) in &spec.exports {
        let what = format!("export {name} -> {key}");
        let o = opts.clone();
        let h = match kind_of(name)? {
            Kind::SPSC => export(Consumer::<Spsc>::open(name, o)?, &session, key)?,
            Kind::MPSC => export(Consumer::<Mpsc>::open(name, o)?, &session, key)?,
            Kind::MPMC => export(Consumer::<Mpmc>::open(name, o)?, &session, key)?,
            k => return Err(not_a_channel(name, k)),
        };
        running.push((what, Handle::Export(h)));
    }
    for (key, name) in &spec.imports {
        let what = format!("import {key} -> {name}");
        let o = opts.clone();
        let h = match kind_of(name)? {
            Kind::SPSC => import(&session, key, Producer::<Spsc>::open(name, o)?)?,
            Kind::MPSC => import(&session, key, Producer::<Mpsc>::open(name, o)?)?,
            Kind::MPMC => import(&session, key, Producer::<Mpmc>::open(name, o)?)?,
            k => return Err(not_a_channel(name, k)),
        };
        running.push((what, Handle::Import(h)));
    }
    for (key, name) in &spec.serves {
        let what = format!("serve {key} <- {name}");
        let endpoint = Endpoint::open(name, Side::B, opts.clone())?;
        running.push((what, Handle::Serve(serve(&session, key, endpoint)?)));
    }
    ready();
    let mut outcomes = Vec::new();
    while !running.is_empty() {
        let mut i = 0;
        while i < running.len() {
            if running[i].1.is_finished() {
                let (what, h) = running.swap_remove(i);
                let (ended, stats) = h.finish();
                outcomes.push(Outcome { what, ended, stats });
            } else {
                i += 1;
            }
        }
        if !running.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = session.close().wait();
    Ok(outcomes)
}

fn not_a_channel(name: &str, kind: Kind) -> Error {
    Error::InvalidArgument(format!(
        "{name} is a {} segment, not a channel",
        crate::inspect::kind_name(kind)
    ))
}
