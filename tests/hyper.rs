//! hyper 1.x over shmchan across processes: an HTTP/1 server (`server::conn::http1` on
//! hyper-util's `TokioIo`) in the test process, clients (`client::conn::http1::handshake`) in
//! child processes, each on its own connection (`Listener::accept` / `Endpoint::connect`, then
//! `ShmStream`), exchanging many requests with bodies.
#![cfg(feature = "tokio")]

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::{Rng, ShmName, report, reports, rt, spawn};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use shmchan::Options;
use shmchan::endpoint::{Endpoint, Listener};

const REQUESTS: usize = 300;

/// Request `i`'s body: up to 200 KB, several slots for the large ones.
fn body(client: u64, i: usize) -> Vec<u8> {
    let mut r = Rng((client + 1) * 1_000_003 + i as u64);
    let len = match i % 10 {
        0 => 0,
        9 => r.below(200_000) as usize,
        _ => r.below(2_000) as usize,
    };
    (0..len).map(|_| r.next() as u8).collect()
}

/// The server: `POST /reverse` answers the body reversed, `GET /hello` a greeting; anything
/// else is 404.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let mut bytes = body.collect().await.unwrap().to_bytes().to_vec();
    let resp = match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/reverse") => {
            bytes.reverse();
            Response::builder()
                .header("x-request-len", bytes.len().to_string())
                .body(Full::new(Bytes::from(bytes)))
        }
        ("GET", "/hello") => Response::builder().body(Full::new(Bytes::from_static(b"hi"))),
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new())),
    };
    Ok(resp.unwrap())
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "client" => rt().block_on(async {
            let (name, id) = (&args[0], args[1].parse::<u64>().unwrap());
            let stream = Endpoint::connect(name).await.unwrap().into_stream();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            let conn = tokio::spawn(conn);
            for i in 0..REQUESTS {
                let sent = body(id, i);
                let req = Request::post("/reverse")
                    .header("host", "shm")
                    .body(Full::new(Bytes::from(sent.clone())))
                    .unwrap();
                sender.ready().await.unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                assert_eq!(resp.headers()["x-request-len"], sent.len().to_string());
                let got = resp.into_body().collect().await.unwrap().to_bytes();
                let mut expected = sent;
                expected.reverse();
                assert!(got == expected, "response {i} differs");
            }
            let req = Request::get("/hello")
                .header("host", "shm")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let got = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&got[..], b"hi");
            let req = Request::get("/nothing")
                .header("host", "shm")
                .body(Full::new(Bytes::new()))
                .unwrap();
            assert_eq!(
                sender.send_request(req).await.unwrap().status(),
                StatusCode::NOT_FOUND
            );
            // Dropping the sender ends the connection cleanly.
            drop(sender);
            conn.await.unwrap().unwrap();
            report(format!("client {id} ok {}", REQUESTS + 2));
        }),
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn hyper_http1_server_and_clients_across_processes() {
    let name = ShmName::new("hyper");
    rt().block_on(async {
        let mut listener = Listener::bind(
            name.as_str(),
            Options::new().slot_size(16 << 10).capacity(32),
        )
        .unwrap();
        let clients: Vec<_> = (0..2)
            .map(|id| spawn("client", &[name.as_str(), &id.to_string()]))
            .collect();
        let mut served = tokio::task::JoinSet::new();
        for _ in 0..clients.len() {
            let stream = listener.accept().await.unwrap().into_stream();
            served.spawn(async move {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(handle))
                    .await
            });
        }
        for (id, c) in clients.into_iter().enumerate() {
            // Waited for off the runtime's thread, which serves the connections meanwhile.
            let out = tokio::task::spawn_blocking(move || c.wait_ok())
                .await
                .unwrap();
            assert_eq!(
                reports(&out),
                vec![format!("client {id} ok {}", REQUESTS + 2)]
            );
        }
        // Each connection ends cleanly once its client has gone (end of stream, no error).
        while let Some(r) = served.join_next().await {
            r.unwrap()
                .expect("the server's connection ends without an error");
        }
    });
}
