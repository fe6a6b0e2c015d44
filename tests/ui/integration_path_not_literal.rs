const SPEC: &str = "specs/echo.toml";
integration_runtime::integration!(SPEC);

fn main() {}
