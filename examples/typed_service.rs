//! A typed request/response service across two processes: serde values over shmchan
//! endpoints (feature `serde`), no encode/decode layer of your own.
//!
//! ```text
//! cargo run --example typed_service --features serde
//! ```
//!
//! The server binds a [`Listener`] and starts a client process (a copy of this program). The
//! client connects as a [`TypedEndpoint<Request, Response>`], the server serves it as a
//! [`TypedEndpoint<Response, Request>`]: each value is encoded with postcard straight into
//! the ring's slot and decoded on the other side.

use serde::{Deserialize, Serialize};
use shmchan::endpoint::Listener;
use shmchan::typed::TypedEndpoint;
use shmchan::{Error, Options};

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Look up a user by id.
    GetUser { id: u64 },
    /// Rename a user.
    Rename { id: u64, name: String },
}

/// What the server answers.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Response {
    User {
        id: u64,
        name: String,
        tags: Vec<String>,
    },
    NotFound {
        id: u64,
    },
    Renamed,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("client") {
        return rt.block_on(client(&args[1]));
    }
    rt.block_on(server())
}

async fn server() -> Result<(), Box<dyn std::error::Error>> {
    let name = format!("/shmchan-typed-service-{}", std::process::id());
    let mut listener = Listener::bind(&name, Options::new().slot_size(512).capacity(16))?;
    println!("[server] listening on {name}; starting the client process");
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["client", &name])
        .spawn()?;
    let mut ep = TypedEndpoint::<Response, Request>::accept(&mut listener).await?;
    let mut users = [(1u64, "ada".to_owned()), (2, "grace".to_owned())];
    let mut served = 0;
    loop {
        let reply = match ep.recv().await {
            Ok(Request::GetUser { id }) => match users.iter().find(|u| u.0 == id) {
                Some((id, name)) => Response::User {
                    id: *id,
                    name: name.clone(),
                    tags: vec!["admin".into(), format!("since-{}", 2000 + id)],
                },
                None => Response::NotFound { id },
            },
            Ok(Request::Rename { id, name }) => {
                if let Some(u) = users.iter_mut().find(|u| u.0 == id) {
                    u.1 = name;
                }
                Response::Renamed
            }
            Err(Error::Closed) => break, // the client left
            Err(e) => return Err(e.into()),
        };
        ep.send(&reply).await?;
        served += 1;
    }
    child.wait()?;
    println!("[server] served {served} typed requests");
    Ok(())
}

async fn client(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut ep = TypedEndpoint::<Request, Response>::connect(name).await?;
    ep.send(&Request::GetUser { id: 1 }).await?;
    println!("[client] {:?}", ep.recv().await?);
    ep.send(&Request::Rename {
        id: 1,
        name: "ada lovelace".into(),
    })
    .await?;
    assert_eq!(ep.recv().await?, Response::Renamed);
    ep.send(&Request::GetUser { id: 1 }).await?;
    println!("[client] {:?}", ep.recv().await?);
    ep.send(&Request::GetUser { id: 7 }).await?;
    assert_eq!(ep.recv().await?, Response::NotFound { id: 7 });
    println!("[client] done");
    Ok(())
}
