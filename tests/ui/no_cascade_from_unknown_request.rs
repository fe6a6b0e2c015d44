integration_runtime::integration!("./specs/no_cascade_from_unknown_request.toml");

fn main() {}
