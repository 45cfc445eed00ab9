//! A hand-written tonic service with one unary method (`/bench.Echo/Unary`), messages by
//! `prost::Message` derive (no `protoc`), and the connection wrapper tonic's server wants for
//! a `ShmStream`. Used by `benches/protocols.rs` through `#[path]`.

#![allow(dead_code)]

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use shmchan::endpoint::ShmStream;
use tonic::codegen::http;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

pub const UNARY: &str = "/bench.Echo/Unary";

/// `message Ping { uint64 seq = 1; bytes payload = 2; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ping {
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The service: `Unary` answers the request with `seq + 1`.
#[derive(Clone, Debug)]
pub struct EchoServer;

struct Unary;
impl tonic::server::UnaryService<Ping> for Unary {
    type Response = Ping;
    type Future = BoxFuture<Result<Response<Ping>, Status>>;
    fn call(&mut self, req: Request<Ping>) -> Self::Future {
        Box::pin(async move {
            let mut p = req.into_inner();
            p.seq += 1;
            Ok(Response::new(p))
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
        if req.uri().path() == UNARY {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
                Ok(grpc.unary(Unary, req).await)
            })
        } else {
            Box::pin(async move { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "bench.Echo";
}

/// The client codec.
pub fn codec() -> ProstCodec<Ping, Ping> {
    ProstCodec::default()
}

/// An accepted `ShmStream` as tonic's server wants it (`Connected` is tonic's trait).
pub struct Conn(pub ShmStream);

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
