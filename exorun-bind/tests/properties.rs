//! The binding invariant: a call gives the same results whether it reaches the `values` app
//! directly, through values-relay linked locally, through values-relay linked remotely (from a
//! second runtime), or from a raw neorpc client. Random values of every exported function's
//! real parameter types (read from the app's ledger) are echoed all four ways.

#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::sync::OnceLock;

use common::build;
use common::memory_peer;
use exorun_bind::builder::Linkable;
use exorun_bind::serve::Exports;
use exorun_core::instance::InstanceHandle;
use exorun_core::ledger::Interface;
use exorun_core::runtime::Runtime;
use exorun_transport::client::Client;
use neorpc::codec;
use proptest::prelude::*;
use wasmtime::component::Type;
use wasmtime::component::Val;

const VALUES: &str = "exorun:test/values";

struct World {
    tokio: tokio::runtime::Runtime,
    handle: InstanceHandle,
    local_relay: InstanceHandle,
    remote_relay: InstanceHandle,
    client: Arc<Client>,
    interface: Interface,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (handle, local_relay, remote_relay, client) = tokio.block_on(async {
            let runtime = Runtime::new().unwrap();
            let handle = build(&runtime, "values", Vec::new(), Some("values")).await;
            let local = Linkable::Local(handle.clone());
            let local_relay = build(&runtime, "values-relay", vec![(VALUES, local)], None).await;
            let exports = Exports::new(runtime);
            exports.export("values").unwrap();
            let remote = Linkable::Remote {
                channel: memory_peer(&exports),
                target: "values".into(),
            };
            let elsewhere = Runtime::new().unwrap();
            let remote_relay =
                build(&elsewhere, "values-relay", vec![(VALUES, remote)], None).await;
            (handle, local_relay, remote_relay, memory_peer(&exports))
        });
        let interface = handle.ledger().exports[VALUES].clone();
        World {
            tokio,
            handle,
            local_relay,
            remote_relay,
            client,
            interface,
        }
    })
}

/// A small deterministic generator, so each proptest case is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn text(&mut self) -> String {
        let len = self.below(12);
        (0..len).map(|_| self.char()).collect()
    }

    fn char(&mut self) -> char {
        loop {
            let code = u32::try_from(self.next() % 0x11_0000).unwrap();
            let ascii_first = if self.below(2) == 0 { code % 128 } else { code };
            if let Some(c) = char::from_u32(ascii_first) {
                return c;
            }
        }
    }

    fn pick<'a>(&mut self, names: &[&'a str]) -> &'a str {
        names[self.below(names.len())]
    }
}

fn sample(ty: &Type, rng: &mut Rng) -> Val {
    let bits = rng.next();
    let bytes = bits.to_le_bytes();
    match ty {
        Type::Bool => Val::Bool(bits & 1 == 1),
        Type::S8 => Val::S8(i8::from_le_bytes([bytes[0]])),
        Type::U8 => Val::U8(bytes[0]),
        Type::S16 => Val::S16(i16::from_le_bytes([bytes[0], bytes[1]])),
        Type::U16 => Val::U16(u16::from_le_bytes([bytes[0], bytes[1]])),
        Type::S32 => Val::S32(i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        Type::U32 => Val::U32(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
        Type::S64 => Val::S64(i64::from_le_bytes(bytes)),
        Type::U64 => Val::U64(bits),
        Type::Float32 => Val::Float32(f32::from_bits(u32::from_le_bytes([
            bytes[0], bytes[1], bytes[2], bytes[3],
        ]))),
        Type::Float64 => Val::Float64(f64::from_bits(bits)),
        Type::Char => Val::Char(rng.char()),
        Type::String => Val::String(rng.text()),
        other @ (Type::List(_)
        | Type::Record(_)
        | Type::Tuple(_)
        | Type::Variant(_)
        | Type::Enum(_)
        | Type::Option(_)
        | Type::Result(_)
        | Type::Flags(_)
        | Type::Map(_)
        | Type::FixedLengthList(_)
        | Type::Own(_)
        | Type::Borrow(_)
        | Type::Future(_)
        | Type::Stream(_)
        | Type::ErrorContext) => sample_compound(other, rng),
    }
}

#[allow(
    clippy::wildcard_enum_match_arm,
    reason = "scalars are handled by `sample`; the values app has no maps, fixed lists or handles"
)]
fn sample_compound(ty: &Type, rng: &mut Rng) -> Val {
    let boxed = |ty: Option<Type>, rng: &mut Rng| ty.map(|ty| Box::new(sample(&ty, rng)));
    match ty {
        Type::List(list) => {
            let len = rng.below(4);
            Val::List((0..len).map(|_| sample(&list.ty(), rng)).collect())
        }
        Type::Record(record) => Val::Record(
            record
                .fields()
                .map(|field| (field.name.to_owned(), sample(&field.ty, rng)))
                .collect(),
        ),
        Type::Tuple(tuple) => Val::Tuple(tuple.types().map(|ty| sample(&ty, rng)).collect()),
        Type::Variant(variant) => {
            let cases: Vec<_> = variant.cases().collect();
            let case = &cases[rng.below(cases.len())];
            Val::Variant(case.name.to_owned(), boxed(case.ty.clone(), rng))
        }
        Type::Enum(cases) => Val::Enum(rng.pick(&cases.names().collect::<Vec<_>>()).to_owned()),
        Type::Option(option) => match rng.below(2) {
            0 => Val::Option(None),
            _ => Val::Option(Some(Box::new(sample(&option.ty(), rng)))),
        },
        Type::Result(result) => match rng.below(2) {
            0 => Val::Result(Ok(boxed(result.ok(), rng))),
            _ => Val::Result(Err(boxed(result.err(), rng))),
        },
        Type::Flags(flags) => Val::Flags(
            flags
                .names()
                .filter(|_| rng.below(2) == 0)
                .map(str::to_owned)
                .collect(),
        ),
        other => panic!("the values app has no {other:?}"),
    }
}

async fn call(handle: &InstanceHandle, function: &str, args: &[Val], count: usize) -> Vec<Val> {
    let mut results = vec![Val::Bool(false); count];
    handle
        .call(VALUES, function, args, &mut results)
        .await
        .unwrap();
    results
}

async fn raw(world: &World, function: &str, args: &[Val], types: &[Type]) -> Vec<Val> {
    let slab = codec::encode(args).unwrap();
    let method = format!("{VALUES}#{function}");
    let reply = common::call_slab(&world.client, "values", &method, &slab)
        .await
        .unwrap()
        .unwrap();
    codec::decode(&reply, types, &codec::Limits::default()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_values_function_answers_the_same_locally_and_remotely(seed in 1u64..) {
        let world = world();
        let mut rng = Rng(seed);
        for (function, signature) in &world.interface.functions {
            let args: Vec<Val> = signature.params.iter().map(|(_, ty)| sample(ty, &mut rng)).collect();
            let count = signature.results.len();
            let [direct, local, remote, raw] = world.tokio.block_on(async {
                [
                    call(&world.handle, function, &args, count).await,
                    call(&world.local_relay, function, &args, count).await,
                    call(&world.remote_relay, function, &args, count).await,
                    raw(world, function, &args, &signature.results).await,
                ]
            });
            prop_assert_eq!(&direct, &local, "{} through a local link", function);
            prop_assert_eq!(&direct, &remote, "{} through a remote link", function);
            prop_assert_eq!(&direct, &raw, "{} from a raw client", function);
            if args.len() == 1 {
                prop_assert_eq!(&direct, &args, "{} echoes its argument", function);
            }
        }
    }
}
