// @generated from specs/job_runner.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `JobRunner` integration, generated from its spec.
///
/// Report rendering behind OAuth2 client credentials.
pub mod job_runner {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `ReportJob` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct ReportJob {
        /// `report` (enum).
        pub report: ReportJobReport,
        /// The month, as YYYY-MM.
        pub month: __rt::String,
        /// `format` (enum).
        #[serde(default = "__default_report_job_format")]
        pub format: ReportJobFormat,
    }
    impl ReportJob {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.len_in("month", self.month.chars().count(), 7..=7);
            violations.finish()
        }
    }
    __rt::impl_entity!(ReportJob);
    /// Allowed values of `ReportJob.report`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum ReportJobReport {
        /// `sales`
        #[serde(rename = "sales")]
        Sales,
        /// `inventory`
        #[serde(rename = "inventory")]
        Inventory,
    }
    impl ReportJobReport {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                ReportJobReport::Sales => "sales",
                ReportJobReport::Inventory => "inventory",
            }
        }
    }
    /// Allowed values of `ReportJob.format`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum ReportJobFormat {
        /// `pdf`
        #[serde(rename = "pdf")]
        Pdf,
        /// `csv`
        #[serde(rename = "csv")]
        Csv,
    }
    impl ReportJobFormat {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                ReportJobFormat::Pdf => "pdf",
                ReportJobFormat::Csv => "csv",
            }
        }
    }
    fn __default_report_job_format() -> ReportJobFormat {
        ReportJobFormat::Pdf
    }
    /// The `Report` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Report {
        /// `url` (string).
        pub url: __rt::String,
        /// `pages` (int).
        pub pages: i64,
    }
    __rt::impl_entity!(Report, unconstrained);
    /// Where a `JobRunner` call is in its lifecycle.
    pub type JobRunnerStatus = __rt::CallStatus;
    /// The typed request parameters of a `JobRunner` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params"
    )]
    pub enum JobRunnerRequest {
        /// Parameters of `render` (POST /v1/reports/{report}).
        #[serde(rename = "render")]
        Render(ReportJob),
    }
    impl __rt::CallRequest for JobRunnerRequest {
        const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
    }
    impl __rt::IntoCall for JobRunnerRequest {
        const INTEGRATION: &'static str = "JobRunner";
        fn endpoint(&self) -> &'static str {
            match *self {
                JobRunnerRequest::Render(_) => "render",
            }
        }
        fn into_params(self) -> __rt::serde_json::Value {
            match self {
                JobRunnerRequest::Render(params) => __rt::to_value(&params),
            }
        }
    }
    impl __rt::From<ReportJob> for JobRunnerRequest {
        fn from(params: ReportJob) -> Self {
            JobRunnerRequest::Render(params)
        }
    }
    impl __rt::IntoCall for ReportJob {
        const INTEGRATION: &'static str = "JobRunner";
        fn endpoint(&self) -> &'static str {
            "render"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `JobRunner` call.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum JobRunnerResponse {
        /// Result of a `render` call.
        Render(Report),
    }
    impl __rt::CallResponse for JobRunnerResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> __rt::Result<Self, __rt::ClientError> {
            match endpoint {
                "render" => {
                    __rt::read_stored(endpoint, value, "stored response data")
                        .map(JobRunnerResponse::Render)
                }
                _ => __rt::Err(__rt::unknown_endpoint("JobRunner", endpoint)),
            }
        }
    }
    /// One call to `JobRunner`: the record business code creates and the runtime drives to a terminal state.
    pub type JobRunnerCall = __rt::Call<JobRunnerRequest, JobRunnerResponse>;
    /// A lifecycle event of a `JobRunner` call: `initialized -> processing -> completed | failed`.
    pub type JobRunnerEvent = __rt::Event<JobRunnerResponse>;
    /// Settings of the `JobRunner` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct JobRunnerConfig {
        /// Where requests go.
        pub base_url: __rt::String,
        /// Where OAuth2 tokens are requested.
        pub token_url: __rt::String,
        /// OAuth2 client id of this service (from `JOB_RUNNER_CLIENT_ID`).
        pub client_id: __rt::Secret,
        /// OAuth2 client secret of this service (from `JOB_RUNNER_CLIENT_SECRET`).
        pub client_secret: __rt::Secret,
    }
    impl JobRunnerConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            let mut env = __rt::EnvReader::new("JobRunner");
            let base_url = env
                .value_or("JOB_RUNNER_BASE_URL", "https://jobs.example.com");
            let token_url = env
                .value_or(
                    "JOB_RUNNER_TOKEN_URL",
                    "https://auth.example.com/oauth/token",
                );
            let client_id = env
                .secret("JOB_RUNNER_CLIENT_ID", "OAuth2 client id of this service");
            let client_secret = env
                .secret(
                    "JOB_RUNNER_CLIENT_SECRET",
                    "OAuth2 client secret of this service",
                );
            env.finish()?;
            __rt::Ok(JobRunnerConfig {
                base_url,
                token_url,
                client_id,
                client_secret,
            })
        }
    }
    /// A typed HTTP client of `JobRunner`: one method per endpoint.
    #[derive(Debug, Clone)]
    pub struct JobRunnerClient {
        http: __rt::HttpClient,
    }
    impl JobRunnerClient {
        /// A client for the given settings.
        pub fn new(config: &JobRunnerConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::OAuth2(__rt::OAuth2Config {
                    token_url: config.token_url.clone(),
                    client_id: config.client_id.clone(),
                    client_secret: __rt::Some(config.client_secret.clone()),
                    scopes: ::std::vec![__rt::String::from("reports:write")],
                    refresh_token: __rt::None,
                    authorization_url: __rt::None,
                }),
            )?;
            __rt::Ok(JobRunnerClient { http })
        }
        /// This client, sending through `client`; see
        /// [`JobRunner::with_reqwest_client`]: the spec's policies apply on top.
        #[must_use]
        pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
            JobRunnerClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /v1/reports/{report}`.
        pub async fn render(
            &self,
            request: &ReportJob,
            options: &__rt::CallOptions,
        ) -> __rt::Result<__rt::Reply<Report>, __rt::ClientError> {
            __rt::send(&self.http, &__ENDPOINT_RENDER, request, options).await
        }
    }
    static __ENDPOINT_RENDER: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[0usize],
            path: &[
                __rt::PathPart::Literal("/v1/reports/"),
                __rt::PathPart::Field("report"),
            ],
            query: &[],
            headers: &[],
            body: &[
                (&["month"], __rt::Source::Field("month")),
                (&["format"], __rt::Source::Field("format")),
            ],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("error")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "render",
            status: __rt::None,
            external_id: __rt::ExternalIdSpec::Generated,
            result: __rt::Some(
                &[
                    ("url", &[__rt::Key("report"), __rt::Key("url")]),
                    ("pages", &[__rt::Key("report"), __rt::Key("pages")]),
                ],
            ),
            error: __rt::Some(&[__rt::Key("error")]),
        },
    };
    /// The `JobRunner` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct JobRunner {
        config: JobRunnerConfig,
        client: JobRunnerClient,
    }
    impl JobRunner {
        /// The integration with the given settings.
        pub fn new(config: JobRunnerConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let client = JobRunnerClient::new(&config)?;
            __rt::Ok(JobRunner { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            Self::new(JobRunnerConfig::from_env()?)
        }
        /// The integration, sending through `client`, a `reqwest::Client` you
        /// configured (proxies, root certificates, default headers); the spec's
        /// timeouts, size limits, auth and redirect rules still apply on top.
        /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
        /// that follows redirects itself bypasses the spec's redirect rules (the
        /// request then fails, but has been sent on). Its own connect timeout
        /// applies instead of the spec's.
        ///
        /// `JobRunner::from_env()?.with_reqwest_client(client)`
        #[must_use]
        pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
            self.client = self.client.with_reqwest_client(client);
            self
        }
        /// The typed client, for direct calls.
        pub fn client(&self) -> &JobRunnerClient {
            &self.client
        }
        /// The settings.
        pub fn config(&self) -> &JobRunnerConfig {
            &self.config
        }
        /// Static facts about the integration: endpoints, policies, polling, webhook.
        pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl __rt::Generated for JobRunner {
        const GLUE: &'static __rt::Glue = &__rt::Glue {
            descriptor: &__DESCRIPTOR,
            calls: &[__rt::CallGlue::new::<ReportJob, Report>(&__ENDPOINT_RENDER)],
            poll: __rt::None,
            webhook: __rt::None,
        };
        fn http(&self) -> &__rt::HttpClient {
            &self.client.http
        }
    }
    const __POLICY: __rt::PolicyDescriptor = __rt::PolicyDescriptor {
        retry: __rt::RetryPolicy {
            max_attempts: 3u32,
            max_backoff_ms: 5000u64,
            ..__rt::RetryPolicy::SPEC_DEFAULT
        },
        ..__rt::PolicyDescriptor::DEFAULT
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
        name: "JobRunner",
        module: "job_runner",
        endpoints: &[
            __rt::EndpointDescriptor {
                starts_calls: true,
                request_fields: __rt::RequestFields {
                    all: &["report", "month", "format"],
                    path: &["report"],
                    headers: &[],
                },
                ..__rt::EndpointDescriptor::new(
                    "render",
                    "POST",
                    "/v1/reports/{report}",
                    __POLICY,
                )
            },
        ],
        policy: __POLICY,
        polling: __rt::None,
        webhook: __rt::None,
        fingerprint: "fnv1a64:b92c5e4c6947fa74",
    };
}
