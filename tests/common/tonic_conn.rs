//! tonic's server side of a shmchan connection, shared by `tests/tonic.rs` and
//! `benches/support/echo_grpc.rs` (both include this file with `#[path]`): an accepted
//! `ShmStream` wrapped so that `Server::serve_with_incoming` takes it (`Connected` is tonic's
//! trait, so the stream is wrapped), and the boxed future type hand-written services return.

#![allow(dead_code)]

use std::pin::Pin;
use std::task::{Context, Poll};

use shmchan::endpoint::ShmStream;

/// The future a hand-written tonic service returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// An accepted `ShmStream` as tonic's server wants it.
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

/// Routes a hand-written tonic service by path, what tonic-build would generate:
/// `grpc_service!(Server, "pkg.Service", |req| { PATH => handler, ... })` implements tonic's
/// `Service` and `NamedService` for `Server`; a request to `PATH` is answered by `handler`,
/// an expression that may `.await` and use `req`; any other path by `unimplemented`.
/// (Include this file with `#[macro_use]` to use it.)
macro_rules! grpc_service {
    ($server:ty, $name:literal, |$req:ident| { $($path:pat => $handler:expr),+ $(,)? }) => {
        impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for $server
        where
            B: tonic::codegen::Body + Send + 'static,
            B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
        {
            type Response = tonic::codegen::http::Response<tonic::body::Body>;
            type Error = std::convert::Infallible;
            type Future = std::pin::Pin<
                Box<
                    dyn Future<Output = Result<Self::Response, std::convert::Infallible>>
                        + Send,
                >,
            >;

            fn poll_ready(
                &mut self,
                _: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, $req: tonic::codegen::http::Request<B>) -> Self::Future {
                match $req.uri().path() {
                    $($path => Box::pin(async move { Ok($handler) }),)+
                    _ => Box::pin(async move {
                        Ok(tonic::Status::unimplemented("no such method").into_http())
                    }),
                }
            }
        }

        impl tonic::server::NamedService for $server {
            const NAME: &'static str = $name;
        }
    };
}
