integration_runtime::integration!("./specs/result_field_not_in_entity.toml");

fn main() {}
