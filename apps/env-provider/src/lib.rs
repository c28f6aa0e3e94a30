//! env-provider: exports `wasi:cli/environment` itself, so a WASI import can be linked to a
//! component (locally or remotely) instead of the WASI system: no interface is special.
wit_bindgen::generate!({
    inline: "
        package wasi:cli@0.2.12;
        interface environment {
            get-environment: func() -> list<tuple<string, string>>;
            get-arguments: func() -> list<string>;
            initial-cwd: func() -> option<string>;
        }
        world env-provider { export environment; }
    ",
});

struct App;

impl exports::wasi::cli::environment::Guest for App {
    fn get_environment() -> Vec<(String, String)> {
        vec![("GREETING".to_string(), "from a component".to_string())]
    }

    fn get_arguments() -> Vec<String> {
        vec!["env-provider".to_string()]
    }

    fn initial_cwd() -> Option<String> {
        None
    }
}

export!(App);
