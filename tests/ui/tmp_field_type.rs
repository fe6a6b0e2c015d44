integration_runtime::integration!("./specs/tmp_field_type.toml");

fn main() {}
