//! neorpc encode+decode benchmarks: a small `add(u32, u32)` call, a record of ten strings, and a
//! 64 KiB `list<u8>`, each as one call frame encoded and decoded (frame + value slab).
//!
//! Run: `cargo bench -p neorpc --bench codec`. Criterion prints time per iteration and
//! throughput (bytes of frame per second); BENCHMARKS.md records the numbers.

#![allow(
    missing_docs,
    reason = "criterion's macros define undocumented items; a bench has no API"
)]

use criterion::Criterion;
use criterion::Throughput;
use criterion::criterion_group;
use criterion::criterion_main;
use neorpc::codec;
use neorpc::frame;
use wasmtime::component::Component;
use wasmtime::component::Type;
use wasmtime::component::Val;
use wasmtime::component::types::ComponentItem;

const TYPES_WAT: &str = r#"(component
  (type $ten' (record
    (field "f0" string) (field "f1" string) (field "f2" string) (field "f3" string)
    (field "f4" string) (field "f5" string) (field "f6" string) (field "f7" string)
    (field "f8" string) (field "f9" string)))
  (import "ten" (type $ten (eq $ten')))
  (import "add" (func (param "a" u32) (param "b" u32)))
  (import "record" (func (param "r" $ten)))
  (import "bytes" (func (param "b" (list u8))))
)"#;

fn param_types(name: &str) -> Vec<Type> {
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, TYPES_WAT).expect("bench types compile");
    let ty = component.component_type();
    let (_, item) = ty
        .imports(&engine)
        .find(|(n, _)| *n == name)
        .expect("import exists");
    let ComponentItem::ComponentFunc(func) = item.ty else {
        panic!("{name} is not a function")
    };
    func.params().map(|(_, ty)| ty).collect()
}

fn round_trip(types: &[Type], vals: &[Val]) -> usize {
    let mut writer = frame::CallWriter::new("provider", "exorun:test/math#add").expect("frame");
    codec::encode_into(writer.args(), vals, &codec::Limits::default()).expect("encode");
    let mut call = writer.finish(&[]).expect("frame");
    call.set_seq(frame::Seq(7));
    let bytes = call.into_bytes();
    let frame::Message::Call(call) = frame::decode(&bytes).expect("decode") else {
        panic!("not a call")
    };
    let decoded = codec::decode(call.args, types, &codec::Limits::default()).expect("values");
    assert_eq!(decoded.len(), vals.len());
    bytes.len()
}

fn bench_case(c: &mut Criterion, name: &str, types: &[Type], vals: &[Val]) {
    let frame_bytes = round_trip(types, vals);
    let mut group = c.benchmark_group("neorpc");
    group.throughput(Throughput::Bytes(u64::try_from(frame_bytes).expect("fits")));
    group.bench_function(name, |b| {
        b.iter(|| round_trip(types, std::hint::black_box(vals)))
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let add = [Val::U32(10), Val::U32(5)];
    bench_case(c, "add_u32_u32", &param_types("add"), &add);

    let fields = (0..10).map(|i| (format!("f{i}"), Val::String(format!("value number {i}"))));
    let record = [Val::Record(fields.collect())];
    bench_case(c, "record_10_strings", &param_types("record"), &record);

    let bytes = [Val::List(
        (0..65536u32)
            .map(|i| Val::U8(u8::try_from(i % 251).expect("below 251")))
            .collect(),
    )];
    bench_case(c, "list_u8_64k", &param_types("bytes"), &bytes);
}

criterion_group!(neorpc_benches, benches);
criterion_main!(neorpc_benches);
