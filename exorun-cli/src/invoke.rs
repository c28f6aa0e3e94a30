//! `--invoke 'INSTANCE.INTERFACE#FUNCTION(ARGS)'`: parsing the call and showing its results, in
//! WAVE text (the notation `wasmtime run --invoke` uses). The instance is everything before the
//! first `.`; `INTERFACE#` may be left out for a root export.

use exorun_core::instance;
use exorun_core::instance::InstanceHandle;
use wasmtime::component::Val;
use wasmtime::component::wasm_wave;

/// Why an invocation could not be made or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not `INSTANCE.INTERFACE#FUNCTION(ARGS)`.
    #[error("--invoke `{text}`: expected INSTANCE.INTERFACE#FUNCTION(ARGS)")]
    Shape {
        /// The text given.
        text: String,
    },
    /// The composition has no such instance.
    #[error("--invoke: no instance `{instance}`")]
    UnknownInstance {
        /// The instance, by its manifest name.
        instance: String,
    },
    /// The instance's app does not export the function.
    #[error("--invoke: `{instance}` exports no {interface}#{function}")]
    UnknownFunction {
        /// The instance, by its manifest name.
        instance: String,

        /// The interface, fully qualified.
        interface: String,

        /// The function.
        function: String,
    },
    /// The arguments do not parse against the function's parameter types.
    #[error("--invoke: arguments: {message}")]
    Arguments {
        /// What happened, in words.
        message: String,
    },
    /// The call failed.
    #[error("{instance}.{interface}#{function}: {source}")]
    Call {
        /// The instance, by its manifest name.
        instance: String,

        /// The interface, fully qualified.
        interface: String,

        /// The function.
        function: String,

        /// The underlying error.
        source: Box<instance::Error>,
    },
}

/// A parsed `--invoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The instance's manifest name.
    pub instance: String,
    /// The exported interface (empty for a root export).
    pub interface: String,
    /// The function.
    pub function: String,
    /// The WAVE text of the arguments, without the parentheses.
    pub args: String,
}

impl Invocation {
    /// Parses `INSTANCE.INTERFACE#FUNCTION(ARGS)`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let shape = || Error::Shape {
            text: text.to_owned(),
        };
        let (head, rest) = text.split_once('(').ok_or_else(shape)?;
        let args = rest.trim_end().strip_suffix(')').ok_or_else(shape)?;
        let (instance, method) = head.trim().split_once('.').ok_or_else(shape)?;
        let (interface, function) = method.rsplit_once('#').unwrap_or(("", method));
        if instance.is_empty() || function.is_empty() {
            return Err(shape());
        }
        Ok(Self {
            instance: instance.to_owned(),
            interface: interface.to_owned(),
            function: function.to_owned(),
            args: args.to_owned(),
        })
    }

    /// Calls it on `handle` and returns the results as WAVE text (`a, b` for several).
    pub async fn call(&self, handle: &InstanceHandle) -> Result<String, Error> {
        let signature = handle
            .ledger()
            .exports
            .get(&self.interface)
            .and_then(|exported| exported.functions.get(&self.function))
            .ok_or_else(|| Error::UnknownFunction {
                instance: self.instance.clone(),
                interface: self.interface.clone(),
                function: self.function.clone(),
            })?;
        let arguments = |message: String| Error::Arguments { message };
        let text = format!("f({})", self.args);
        let call = wasm_wave::untyped::UntypedFuncCall::parse(&text)
            .map_err(|error| arguments(error.to_string()))?;
        let types = signature.params.iter().map(|(_, ty)| ty);
        let params: Vec<Val> = call
            .to_wasm_params(types)
            .map_err(|error| arguments(error.to_string()))?;
        let mut results = vec![Val::Bool(false); signature.results.len()];
        let called = handle
            .call(&self.interface, &self.function, &params, &mut results)
            .await;
        called.map_err(|source| Error::Call {
            instance: self.instance.clone(),
            interface: self.interface.clone(),
            function: self.function.clone(),
            source: Box::new(source),
        })?;
        Ok(show(&results))
    }
}

/// Results as WAVE text, comma-separated.
pub(crate) fn show(results: &[Val]) -> String {
    let texts: Vec<String> = results
        .iter()
        .map(|val| val.to_wave().unwrap_or_else(|error| format!("<{error}>")))
        .collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Error;
    use super::Invocation;

    proptest! {
        /// Any instance name without `.`, any interface (dots, slashes, `@` versions included),
        /// any function name and any argument text come back out of the text they make.
        #[test]
        fn parse_recovers_every_part(
            instance in "[a-z][a-z0-9-]{0,12}",
            interface in "([a-z]+:[a-z]+/[a-z-]+(@[0-9]\\.[0-9]+\\.[0-9]+)?)?",
            function in "[a-z][a-z0-9-]{0,12}",
            args in "[ -~]{0,24}",
        ) {
            let method = if interface.is_empty() {
                function.clone()
            } else {
                format!("{interface}#{function}")
            };
            let text = format!("{instance}.{method}({args})");
            let parsed = Invocation::parse(&text).unwrap();
            prop_assert_eq!(parsed, Invocation { instance, interface, function, args });
        }
    }

    #[test]
    fn malformed_invocations_name_the_expected_shape() {
        for text in ["calc", "calc.run", ".x#run()", "calc.x#()", "calc.x#run("] {
            let error = Invocation::parse(text).unwrap_err();
            assert!(
                matches!(&error, Error::Shape { text: shown } if shown == text),
                "{error:?}"
            );
        }
    }
}
