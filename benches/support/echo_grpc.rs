//! A hand-written tonic service with one unary method (`/bench.Echo/Unary`), messages by
//! `prost::Message` derive (no `protoc`), and (from `tests/common/tonic_conn.rs`, shared with
//! `tests/tonic.rs`) the connection wrapper tonic's server wants for a `ShmStream`. Used by
//! `benches/protocols.rs` through `#[path]`.

#![allow(dead_code)]

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

#[macro_use]
#[path = "../../tests/common/tonic_conn.rs"]
mod tonic_conn;
pub use tonic_conn::{BoxFuture, Conn};

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

grpc_service!(EchoServer, "bench.Echo", |req| {
    UNARY => {
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<Ping, Ping>::default());
        grpc.unary(Unary, req).await
    },
});

/// The client codec.
pub fn codec() -> ProstCodec<Ping, Ping> {
    ProstCodec::default()
}
