integration_runtime::integration!("./specs/unknown_signature_scheme.toml");

fn main() {}
