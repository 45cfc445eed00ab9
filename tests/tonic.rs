//! tonic gRPC over shmchan across processes: a unary and a server-streaming call. The server
//! (`Server::builder().serve_with_incoming` on a stream of accepted `ShmStream`s) runs in the
//! test process; the client (`Endpoint::from_static("http://shm").connect_with_connector`, a
//! connector that calls `shmchan::endpoint::Endpoint::connect`) in a child process.
//!
//! No `protoc` is needed: the messages are written with `prost::Message` derives and the
//! service by hand on tonic's `server::Grpc` / `client::Grpc` with `tonic_prost::ProstCodec`
//! (what tonic-build would generate, for two methods).
#![cfg(feature = "tokio")]

mod common;
#[macro_use]
#[path = "common/tonic_conn.rs"]
mod tonic_conn;

use std::pin::Pin;

use common::{ShmName, report, reports, rt, spawn};
use futures::Stream;
use shmchan::Options;
use shmchan::endpoint::Listener;
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tonic_conn::{BoxFuture, Conn};
use tonic_prost::ProstCodec;

/// `message EchoRequest { string text = 1; uint32 repeat = 2; bytes payload = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    repeat: u32,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
}

/// `message EchoReply { string text = 1; uint32 index = 2; bytes payload = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    index: u32,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
}

const UNARY: &str = "/shmtest.Echo/Unary";
const STREAM: &str = "/shmtest.Echo/Stream";

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// The service `shmtest.Echo { rpc Unary(EchoRequest) returns (EchoReply); rpc
/// Stream(EchoRequest) returns (stream EchoReply); }`, routed by hand.
#[derive(Clone, Debug)]
struct EchoServer;

struct Unary;
impl tonic::server::UnaryService<EchoRequest> for Unary {
    type Response = EchoReply;
    type Future = BoxFuture<Result<Response<EchoReply>, Status>>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let r = req.into_inner();
            if r.text == "fail" {
                return Err(Status::invalid_argument("asked to fail"));
            }
            let mut payload = r.payload;
            payload.reverse();
            Ok(Response::new(EchoReply {
                text: r.text.to_uppercase(),
                index: 0,
                payload,
            }))
        })
    }
}

struct Streaming;
impl tonic::server::ServerStreamingService<EchoRequest> for Streaming {
    type Response = EchoReply;
    type ResponseStream = ReplyStream;
    type Future = BoxFuture<Result<Response<ReplyStream>, Status>>;
    fn call(&mut self, req: Request<EchoRequest>) -> Self::Future {
        Box::pin(async move {
            let r = req.into_inner();
            let stream = futures::stream::iter((0..r.repeat).map(move |i| {
                Ok(EchoReply {
                    text: format!("{} #{i}", r.text),
                    index: i,
                    payload: r.payload.clone(),
                })
            }));
            Ok(Response::new(Box::pin(stream) as ReplyStream))
        })
    }
}

grpc_service!(EchoServer, "shmtest.Echo", |req| {
    UNARY => {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
        grpc.unary(Unary, req).await
    },
    STREAM => {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
        grpc.server_streaming(Streaming, req).await
    },
});

/// The client's calls; returns what it checked.
async fn client(name: String) -> String {
    let channel = tonic::transport::Endpoint::from_static("http://shm")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let name = name.clone();
            async move {
                let ep = shmchan::endpoint::Endpoint::connect(&name).await?;
                Ok::<_, shmchan::Error>(hyper_util::rt::TokioIo::new(ep.into_stream()))
            }
        }))
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    let codec = || ProstCodec::<EchoRequest, EchoReply>::default();
    let mut unary = 0;
    for i in 0..200u32 {
        let payload: Vec<u8> = (0..(i as usize * 311) % 70_000).map(|b| b as u8).collect();
        let req = EchoRequest {
            text: format!("hello {i}"),
            repeat: 0,
            payload: payload.clone(),
        };
        grpc.ready().await.unwrap();
        let reply = grpc
            .unary(
                Request::new(req),
                http::uri::PathAndQuery::from_static(UNARY),
                codec(),
            )
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.text, format!("HELLO {i}"));
        let mut expected = payload;
        expected.reverse();
        assert!(reply.payload == expected, "unary reply {i} differs");
        unary += 1;
    }
    // A status travels back as a status.
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<_, EchoReply, _>(
            Request::new(EchoRequest {
                text: "fail".into(),
                repeat: 0,
                payload: vec![],
            }),
            http::uri::PathAndQuery::from_static(UNARY),
            codec(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "asked to fail");
    // Server streaming: 500 replies of 3 KB each, in order.
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            Request::new(EchoRequest {
                text: "tick".into(),
                repeat: 500,
                payload: vec![7u8; 3000],
            }),
            http::uri::PathAndQuery::from_static(STREAM),
            codec(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut n = 0u32;
    while let Some(reply) = stream.message().await.unwrap() {
        assert_eq!(reply.index, n);
        assert_eq!(reply.text, format!("tick #{n}"));
        assert!(reply.payload == vec![7u8; 3000]);
        n += 1;
    }
    format!("unary {unary} status ok streamed {n}")
}

#[test]
fn child_entry() {
    common::dispatch(|role, args| match role {
        "client" => report(rt().block_on(client(args[0].clone()))),
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn tonic_unary_and_server_streaming_across_processes() {
    let name = ShmName::new("tonic");
    rt().block_on(async {
        let listener = Listener::bind(
            name.as_str(),
            Options::new().slot_size(16 << 10).capacity(32),
        )
        .unwrap();
        let incoming = futures::stream::unfold(listener, |mut l| async move {
            let r = l.accept().await.map(|ep| Conn(ep.into_stream()));
            Some((r, l))
        });
        let server = tokio::spawn(
            tonic::transport::Server::builder().serve_with_incoming(EchoServer, incoming),
        );
        let child = spawn("client", &[name.as_str()]);
        let out = tokio::task::spawn_blocking(move || child.wait_ok())
            .await
            .unwrap();
        assert_eq!(
            reports(&out),
            vec!["unary 200 status ok streamed 500".to_owned()]
        );
        assert!(!server.is_finished(), "the server keeps serving");
        server.abort();
    });
}
