integration_runtime::integration!("/etc/specs/echo.toml");

fn main() {}
