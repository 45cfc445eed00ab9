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

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use common::{ShmName, report, reports, spawn};
use futures::Stream;
use shmchan::Options;
use shmchan::endpoint::{Listener, ShmStream};
use tonic::codegen::http;
use tonic::{Request, Response, Status};
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
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

impl<B> tonic::codegen::Service<http::Request<B>> for EchoServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match req.uri().path() {
            UNARY => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
                Ok(grpc.unary(Unary, req).await)
            }),
            STREAM => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<EchoReply, EchoRequest>::default());
                Ok(grpc.server_streaming(Streaming, req).await)
            }),
            _ => Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "shmtest.Echo";
}

/// An accepted connection as tonic's server wants it (`Connected` is tonic's trait, so the
/// test wraps the stream).
struct Conn(ShmStream);

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl tokio::io::AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

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
