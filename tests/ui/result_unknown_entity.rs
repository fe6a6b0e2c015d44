integration_runtime::integration!("./specs/result_unknown_entity.toml");

fn main() {}
