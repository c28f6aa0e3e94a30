//! values: echoes every WIT value kind nested in the others; proves the codec end to end through real components.
wit_bindgen::generate!({ path: "../wit", world: "exorun:test/values-app", generate_all });

use exports::exorun::test::values::Color;
use exports::exorun::test::values::Everything;
use exports::exorun::test::values::Perms;
use exports::exorun::test::values::Point;
use exports::exorun::test::values::Shape;

struct App;

impl exports::exorun::test::values::Guest for App {
    fn echo_everything(v: Everything) -> Everything {
        v
    }

    fn echo_floats(a: f32, b: f64) -> (f32, f64) {
        (a, b)
    }

    fn echo_extremes(a: i64, b: u64) -> (i64, u64) {
        (a, b)
    }

    fn echo_string(s: String, c: char) -> (String, char) {
        (s, c)
    }

    fn echo_shapes(v: Vec<Shape>) -> Vec<Shape> {
        v
    }

    fn echo_result(v: Result<Point, Color>) -> Result<Point, Color> {
        v
    }

    fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
        v
    }

    fn echo_perms(v: Perms) -> Perms {
        v
    }
}

export!(App);
