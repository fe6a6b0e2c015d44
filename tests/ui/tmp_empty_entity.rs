integration_runtime::integration!("./specs/tmp_empty_entity.toml");

fn main() {}
