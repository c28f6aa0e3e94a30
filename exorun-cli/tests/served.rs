//! A served runtime keeps its exports up: across two processes, an instance whose call trapped
//! is replaced, and the next remote call succeeds.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use common::Server;
use common::manifest;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::net;
use exorun_transport::transport;
use neorpc::failure::Failure;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// A raw neorpc call of `exorun:test/misbehave#FUNCTION` on the served `math`.
async fn misbehave(
    client: &Client,
    function: &str,
    args: &[Val],
) -> Result<Vec<Val>, client::Error> {
    let slab = neorpc::codec::encode(args).unwrap();
    let method = format!("exorun:test/misbehave#{function}");
    let frame = neorpc::frame::encode_call("math", &method, &slab, &[]).unwrap();
    let reply = client.call(frame).await?;
    let types: Vec<Type> = if function == "echo" {
        vec![Type::U32]
    } else {
        Vec::new()
    };
    Ok(neorpc::codec::decode(&reply, &types, &neorpc::codec::Limits::default()).unwrap())
}

#[test]
fn a_served_instance_that_trapped_answers_the_next_call_from_a_fresh_instance() {
    let path = manifest(
        "restarting",
        r#"
[apps]
misbehave = "{fixtures}/misbehave.wasm"
[instances.math]
app = "misbehave"
export = true
"#,
    );
    let server = Server::start(&path, "tcp://127.0.0.1:0");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio.block_on(async {
        let address = Address::parse(&server.address).unwrap();
        let connection = net::connect(&address, transport::MESSAGE_BYTES_MAX)
            .await
            .unwrap();
        let client = Client::new(connection, client::Config::default());
        let trapped = misbehave(&client, "trap", &[]).await.unwrap_err();
        let client::Error::Remote(Failure::AppTrapped { message }) = &trapped else {
            panic!("{trapped:?}")
        };
        assert!(message.contains("unreachable"), "{message}");
        for n in [1, 2] {
            let echoed = misbehave(&client, "echo", &[Val::U32(n)]).await.unwrap();
            assert_eq!(echoed, [Val::U32(n)]);
        }
    });
    let (status, stderr) = server.interrupt();
    assert!(status.success(), "{stderr}");
}
