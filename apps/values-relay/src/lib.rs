//! values-relay: exports `values` by forwarding each call to its imported `values`, so every
//! value kind crosses a link (local or remote) both ways, inside real components.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/values-relay", generate_all });

use exorun::test::values as imported;
use exports::exorun::test::values as exported;

/// Converts between the import's and the export's generated types (the same WIT, two sets of
/// Rust types), one module per direction.
macro_rules! conversions {
    ($module:ident: $($from:ident)::+ => $($to:ident)::+) => {
        mod $module {
            use crate::$($from)::+ as a;
            use crate::$($to)::+ as b;

            pub fn color(c: a::Color) -> b::Color {
                match c {
                    a::Color::Red => b::Color::Red,
                    a::Color::Green => b::Color::Green,
                    a::Color::Blue => b::Color::Blue,
                }
            }

            pub fn perms(p: a::Perms) -> b::Perms {
                b::Perms::from_bits_retain(p.bits())
            }

            pub fn point(p: a::Point) -> b::Point {
                b::Point { x: p.x, y: p.y, label: p.label }
            }

            pub fn shape(s: a::Shape) -> b::Shape {
                match s {
                    a::Shape::Circle(r) => b::Shape::Circle(r),
                    a::Shape::Rect(p) => b::Shape::Rect(point(p)),
                    a::Shape::Empty => b::Shape::Empty,
                }
            }

            pub fn shapes(v: Vec<a::Shape>) -> Vec<b::Shape> {
                v.into_iter().map(shape).collect()
            }

            pub fn result(v: Result<a::Point, a::Color>) -> Result<b::Point, b::Color> {
                v.map(point).map_err(color)
            }

            pub fn everything(e: a::Everything) -> b::Everything {
                b::Everything {
                    v_bool: e.v_bool,
                    v_s8: e.v_s8,
                    v_u8: e.v_u8,
                    v_s16: e.v_s16,
                    v_u16: e.v_u16,
                    v_s32: e.v_s32,
                    v_u32: e.v_u32,
                    v_s64: e.v_s64,
                    v_u64: e.v_u64,
                    v_f32: e.v_f32,
                    v_f64: e.v_f64,
                    v_char: e.v_char,
                    v_string: e.v_string,
                    bytes: e.bytes,
                    points: e.points.into_iter().map(point).collect(),
                    shapes: shapes(e.shapes),
                    maybe: e.maybe.map(point),
                    outcome: e.outcome.map(shape),
                    pair: (color(e.pair.0), perms(e.pair.1)),
                    nested: e.nested.map(|list| list.into_iter().map(|s| s.map(shape)).collect()),
                    bare: e.bare,
                    color: color(e.color),
                    perms: perms(e.perms),
                }
            }
        }
    };
}

conversions!(inward: exports::exorun::test::values => exorun::test::values);
conversions!(outward: exorun::test::values => exports::exorun::test::values);

struct App;

impl exported::Guest for App {
    fn echo_everything(v: exported::Everything) -> exported::Everything {
        outward::everything(imported::echo_everything(&inward::everything(v)))
    }

    fn echo_floats(a: f32, b: f64) -> (f32, f64) {
        imported::echo_floats(a, b)
    }

    fn echo_extremes(a: i64, b: u64) -> (i64, u64) {
        imported::echo_extremes(a, b)
    }

    fn echo_string(s: String, c: char) -> (String, char) {
        imported::echo_string(&s, c)
    }

    fn echo_shapes(v: Vec<exported::Shape>) -> Vec<exported::Shape> {
        outward::shapes(imported::echo_shapes(&inward::shapes(v)))
    }

    fn echo_result(v: Result<exported::Point, exported::Color>) -> Result<exported::Point, exported::Color> {
        outward::result(imported::echo_result(inward::result(v).as_ref()))
    }

    fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
        imported::echo_bytes(&v)
    }

    fn echo_perms(v: exported::Perms) -> exported::Perms {
        outward::perms(imported::echo_perms(inward::perms(v)))
    }
}

export!(App);
