integration_runtime::integration!("./specs/template_list_field.toml");

fn main() {}
