integration_runtime::integration!("./specs/unknown_request_entity.toml");

fn main() {}
