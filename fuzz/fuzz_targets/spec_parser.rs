//! Any input: the spec parser returns a spec or diagnostics, never panics,
//! and every diagnostic renders with a position inside the input. Valid
//! specs also generate code without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    match integration_spec::parse(source, "fuzz.toml") {
        Ok(spec) => {
            let _ = integration_spec::codegen::generate(&spec, &Default::default());
        }
        Err(diagnostics) => {
            for d in diagnostics.iter() {
                assert!(d.span.end <= source.len());
                let _ = diagnostics.render(d);
            }
        }
    }
});
