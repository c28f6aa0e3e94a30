//! Secure serving at exorun-bind's boundary, over real loopback TLS: per-export allow lists by
//! key and interface (answered `PermissionDenied` before anything is decoded), and the caller's
//! key reaching a host function on the call path (`exorun_core::principal`), where a system can
//! decide by it.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;

use common::MATH;
use common::build;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Allow;
use exorun_bind::serve::Exports;
use exorun_core::call;
use exorun_core::context::ContextBuilder;
use exorun_core::context::ExorunCtx;
use exorun_core::runtime::Runtime;
use exorun_core::system;
use exorun_core::system::Rejection;
use exorun_core::system::SystemComponent;
use exorun_transport::address::Address;
use exorun_transport::client;
use exorun_transport::client::Client;
use exorun_transport::identity::NodeKey;
use exorun_transport::identity::PublicKey;
use exorun_transport::net;
use exorun_transport::server;
use exorun_transport::tls::Secure;
use exorun_transport::transport;
use neorpc::failure::Failure;
use wasmtime::component::Linker;
use wasmtime::component::Type;
use wasmtime::component::Val;

/// `math.add` as a host function that adds only for `allowed` and rejects anyone else with
/// code 403, naming who asked: an authorization system deciding by the caller's key.
struct Gatekeeper {
    allowed: String,
}

impl SystemComponent for Gatekeeper {
    fn interfaces(&self) -> Vec<String> {
        vec![MATH.to_owned()]
    }

    fn install(&self, linker: &mut Linker<ExorunCtx>) -> Result<(), system::Error> {
        let mut math = linker
            .instance(MATH)
            .map_err(|error| system::define_error(MATH, error))?;
        let allowed = self.allowed.clone();
        math.func_wrap("add", move |_, (a, b): (u32, u32)| {
            let who = call::principal();
            if who.as_deref() == Some(allowed.as_str()) {
                return Ok((a.wrapping_add(b),));
            }
            Err(wasmtime::Error::new(Rejection {
                code: 403,
                message: format!(
                    "{} may not add",
                    who.unwrap_or_else(|| "anonymous".to_owned())
                ),
            }))
        })
        .map_err(|error| system::define_error(MATH, error))
    }

    fn configure(&self, _: &mut ContextBuilder) -> Result<(), system::Error> {
        Ok(())
    }
}

/// A runtime serving over TLS as `key`: `relay` (its math import answered by the gatekeeper,
/// open to anyone) and `math` (math-provider, allowed as `allow` says).
async fn served(key: &NodeKey, gatekeeper_allows: &PublicKey, allow: Allow) -> Address {
    let runtime = Runtime::new().unwrap();
    let gatekeeper: Arc<dyn SystemComponent> = Arc::new(Gatekeeper {
        allowed: gatekeeper_allows.to_string(),
    });
    let links = vec![(MATH, Linkable::System(gatekeeper))];
    build(&runtime, "relay", links, Some("relay")).await;
    build(&runtime, "math-provider", Vec::new(), Some("math")).await;
    let exports = Exports::new(runtime);
    exports.export("relay").unwrap();
    exports.export_allowing("math", allow).unwrap();
    let address = Address::parse("tls://127.0.0.1:0").unwrap();
    let listener = net::Listener::bind_secure(&address, key).await.unwrap();
    let bound = listener.local_address().unwrap();
    let serving = server::Server::new(exports, server::Config::default())
        .listen(listener)
        .run(std::future::pending());
    tokio::spawn(serving);
    bound
}

async fn add_on(
    address: &Address,
    me: &Arc<NodeKey>,
    server: PublicKey,
    target: &str,
) -> Result<u32, Failure> {
    let secure = Secure {
        key: Arc::clone(me),
        pin: server,
    };
    let connection = net::connect_secure(address, &secure, transport::MESSAGE_BYTES_MAX)
        .await
        .unwrap();
    let client = Client::new(connection, client::Config::default());
    let slab = neorpc::codec::encode(&[Val::U32(40), Val::U32(2)]).unwrap();
    let frame = neorpc::frame::encode_call(target, "exorun:test/math#add", &slab, &[]).unwrap();
    let reply = client.call(frame).await.expect("a reply")?;
    let results =
        neorpc::codec::decode(&reply, &[Type::U32], &neorpc::codec::Limits::default()).unwrap();
    let [Val::U32(sum)] = results[..] else {
        panic!("{results:?}")
    };
    Ok(sum)
}

fn only(key: PublicKey, interfaces: Option<&[&str]>) -> Allow {
    let interfaces = interfaces.map(|names| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<BTreeSet<_>>()
    });
    Allow::Keys(BTreeMap::from([(key, interfaces)]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_answers_only_the_keys_it_allows() {
    let server_key = NodeKey::generate().unwrap();
    let friend = Arc::new(NodeKey::generate().unwrap());
    let stranger = Arc::new(NodeKey::generate().unwrap());
    let allow = only(friend.public(), Some(&[MATH]));
    let address = served(&server_key, &friend.public(), allow).await;
    let server = server_key.public();
    assert_eq!(add_on(&address, &friend, server, "math").await, Ok(42));
    // A stranger cannot tell the guarded export from a missing one.
    let denied = add_on(&address, &stranger, server, "math").await;
    let missing = add_on(&address, &stranger, server, "nothing-here").await;
    let not_found = |instance: &str| {
        Err(Failure::InstanceNotFound {
            instance: instance.into(),
        })
    };
    assert_eq!(denied, not_found("math"));
    assert_eq!(missing, not_found("nothing-here"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allow_list_without_the_interface_denies_it() {
    let server_key = NodeKey::generate().unwrap();
    let friend = Arc::new(NodeKey::generate().unwrap());
    let allow = only(friend.public(), Some(&["exorun:test/other"]));
    let address = served(&server_key, &friend.public(), allow).await;
    // A caller the list names is told precisely what it may not call.
    let denied = add_on(&address, &friend, server_key.public(), "math").await;
    assert_eq!(
        denied,
        Err(Failure::PermissionDenied {
            instance: "math".into(),
            interface: MATH.into(),
            reason: String::new(),
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_function_on_the_call_path_sees_the_callers_key() {
    let server_key = NodeKey::generate().unwrap();
    let friend = Arc::new(NodeKey::generate().unwrap());
    let stranger = Arc::new(NodeKey::generate().unwrap());
    let address = served(&server_key, &friend.public(), Allow::Anyone).await;
    let server = server_key.public();
    // relay's add calls its math import: the gatekeeper, which sees who called the relay.
    assert_eq!(add_on(&address, &friend, server, "relay").await, Ok(42));
    let rejected = add_on(&address, &stranger, server, "relay").await;
    assert_eq!(
        rejected,
        Err(Failure::DomainSpecific {
            code: 403,
            message: format!("{} may not add", stranger.public()),
        })
    );
}

#[test]
fn allow_lists_permit_exactly_what_they_name() {
    let friend = PublicKey::from_bytes([1; 32]);
    let stranger = PublicKey::from_bytes([2; 32]);
    let per_interface = only(friend, Some(&[MATH]));
    assert!(per_interface.permits(Some(&friend), MATH));
    assert!(!per_interface.permits(Some(&friend), "exorun:test/other"));
    assert!(!per_interface.permits(Some(&stranger), MATH));
    assert!(
        !per_interface.permits(None, MATH),
        "anonymous callers have no key"
    );
    let every_interface = only(friend, None);
    assert!(every_interface.permits(Some(&friend), "exorun:test/other"));
    assert!(Allow::Anyone.permits(None, MATH));
    assert!(per_interface.names(Some(&friend)));
    assert!(!per_interface.names(Some(&stranger)));
    assert!(!per_interface.names(None));
    assert!(Allow::Anyone.names(None));
}
