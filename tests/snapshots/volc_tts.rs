// @generated from specs/volc_tts.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `VolcTts` integration, generated from its spec.
///
/// Volcano text-to-speech: async synthesis tasks.
pub mod volc_tts {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `Synthesis` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Synthesis {
        /// What to say.
        pub text: __rt::String,
        /// `voice` (string).
        #[serde(default = "__default_synthesis_voice")]
        pub voice: __rt::String,
        /// `speed` (float).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub speed: __rt::Option<f64>,
        /// `format` (enum).
        #[serde(default = "__default_synthesis_format")]
        pub format: SynthesisFormat,
    }
    impl Synthesis {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.len_in("text", self.text.chars().count(), 1..=5000);
            if let __rt::Some(value) = &self.speed {
                violations.float_in("speed", *value, 0.5..=2.0);
            }
            violations.finish()
        }
    }
    __rt::impl_entity!(Synthesis);
    /// Allowed values of `Synthesis.format`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum SynthesisFormat {
        /// `mp3`
        #[serde(rename = "mp3")]
        Mp3,
        /// `wav`
        #[serde(rename = "wav")]
        Wav,
        /// `ogg`
        #[serde(rename = "ogg")]
        Ogg,
    }
    impl SynthesisFormat {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                SynthesisFormat::Mp3 => "mp3",
                SynthesisFormat::Wav => "wav",
                SynthesisFormat::Ogg => "ogg",
            }
        }
    }
    fn __default_synthesis_voice() -> __rt::String {
        __rt::String::from("en_female_1")
    }
    fn __default_synthesis_format() -> SynthesisFormat {
        SynthesisFormat::Mp3
    }
    /// The `Audio` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Audio {
        /// `url` (string).
        pub url: __rt::String,
        /// `duration_ms` (int).
        pub duration_ms: i64,
    }
    __rt::impl_entity!(Audio, unconstrained);
    /// Where a `VolcTts` call is in its lifecycle.
    pub type VolcTtsStatus = __rt::CallStatus;
    /// The typed request parameters of a `VolcTts` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params"
    )]
    pub enum VolcTtsRequest {
        /// Parameters of `synthesize` (POST /api/v1/tts/tasks).
        #[serde(rename = "synthesize")]
        Synthesize(Synthesis),
    }
    impl __rt::CallRequest for VolcTtsRequest {
        const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
    }
    impl __rt::IntoCall for VolcTtsRequest {
        const INTEGRATION: &'static str = "VolcTts";
        fn endpoint(&self) -> &'static str {
            match *self {
                VolcTtsRequest::Synthesize(_) => "synthesize",
            }
        }
        fn into_params(self) -> __rt::serde_json::Value {
            match self {
                VolcTtsRequest::Synthesize(params) => __rt::to_value(&params),
            }
        }
    }
    impl __rt::From<Synthesis> for VolcTtsRequest {
        fn from(params: Synthesis) -> Self {
            VolcTtsRequest::Synthesize(params)
        }
    }
    impl __rt::IntoCall for Synthesis {
        const INTEGRATION: &'static str = "VolcTts";
        fn endpoint(&self) -> &'static str {
            "synthesize"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `VolcTts` call.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum VolcTtsResponse {
        /// Result of a `synthesize` call.
        Synthesize(Audio),
    }
    impl __rt::CallResponse for VolcTtsResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> __rt::Result<Self, __rt::ClientError> {
            match endpoint {
                "synthesize" => {
                    __rt::read_stored(endpoint, value, "stored response data")
                        .map(VolcTtsResponse::Synthesize)
                }
                _ => __rt::Err(__rt::unknown_endpoint("VolcTts", endpoint)),
            }
        }
    }
    /// One call to `VolcTts`: the record business code creates and the runtime drives to a terminal state.
    pub type VolcTtsCall = __rt::Call<VolcTtsRequest, VolcTtsResponse>;
    /// A lifecycle event of a `VolcTts` call: `initialized -> processing -> completed | failed`.
    pub type VolcTtsEvent = __rt::Event<VolcTtsResponse>;
    /// Settings of the `VolcTts` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct VolcTtsConfig {
        /// Where requests go.
        pub base_url: __rt::String,
        /// API token from the provider console (from `VOLC_TTS_TOKEN`).
        pub token: __rt::Secret,
        /// webhook signing secret (whsec_...) (from `VOLC_TTS_WEBHOOK_SECRET`).
        pub webhook_secret: __rt::Secret,
    }
    impl VolcTtsConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            let mut env = __rt::EnvReader::new("VolcTts");
            let base_url = env.value_or("VOLC_TTS_BASE_URL", "https://tts.example.com");
            let token = env
                .secret("VOLC_TTS_TOKEN", "API token from the provider console");
            let webhook_secret = env
                .secret("VOLC_TTS_WEBHOOK_SECRET", "webhook signing secret (whsec_...)");
            env.finish()?;
            __rt::Ok(VolcTtsConfig {
                base_url,
                token,
                webhook_secret,
            })
        }
    }
    /// A typed HTTP client of `VolcTts`: one method per endpoint.
    #[derive(Debug, Clone)]
    pub struct VolcTtsClient {
        http: __rt::HttpClient,
    }
    impl VolcTtsClient {
        /// A client for the given settings.
        pub fn new(config: &VolcTtsConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::Bearer(config.token.clone()),
            )?;
            __rt::Ok(VolcTtsClient { http })
        }
        /// This client, sending through `client`; see
        /// [`VolcTts::with_reqwest_client`]: the spec's policies apply on top.
        #[must_use]
        pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
            VolcTtsClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /api/v1/tts/tasks` (async: the call finishes later).
        pub async fn synthesize(
            &self,
            request: &Synthesis,
            options: &__rt::CallOptions,
        ) -> __rt::Result<__rt::Reply<()>, __rt::ClientError> {
            __rt::send(&self.http, &__ENDPOINT_SYNTHESIZE, request, options).await
        }
        /// `GET /api/v1/tts/tasks/{external_id}`.
        pub async fn query(
            &self,
            external_id: &str,
        ) -> __rt::Result<__rt::Reply<Audio>, __rt::ClientError> {
            __rt::exchange(
                    &self.http,
                    &__ENDPOINT_QUERY,
                    __rt::Input::external_id(external_id),
                )
                .await
        }
    }
    static __ENDPOINT_SYNTHESIZE: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[0usize],
            path: &[__rt::PathPart::Literal("/api/v1/tts/tasks")],
            query: &[],
            headers: &[],
            body: &[
                (&["input", "text"], __rt::Source::Field("text")),
                (&["input", "voice_type"], __rt::Source::Field("voice")),
                (&["speed_ratio"], __rt::Source::Field("speed")),
                (&["audio", "format"], __rt::Source::Field("format")),
            ],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "synthesize",
            status: __rt::None,
            external_id: __rt::ExternalIdSpec::Required(
                &[__rt::Key("data"), __rt::Key("task_id")],
            ),
            result: __rt::None,
            error: __rt::Some(&[__rt::Key("message")]),
        },
    };
    static __ENDPOINT_QUERY: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[1usize],
            path: &[
                __rt::PathPart::Literal("/api/v1/tts/tasks/"),
                __rt::PathPart::ExternalId,
            ],
            query: &[],
            headers: &[],
            body: &[],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("data"), __rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "query",
            status: __rt::Some(__rt::StatusSpec {
                path: &[__rt::Key("data"), __rt::Key("state")],
                map: &[
                    ("queued", __rt::RemoteStatus::Processing),
                    ("running", __rt::RemoteStatus::Processing),
                    ("done", __rt::RemoteStatus::Completed),
                    ("error", __rt::RemoteStatus::Failed),
                ],
            }),
            external_id: __rt::ExternalIdSpec::Generated,
            result: __rt::Some(
                &[
                    ("url", &[__rt::Key("data"), __rt::Key("audio_url")]),
                    ("duration_ms", &[__rt::Key("data"), __rt::Key("duration")]),
                ],
            ),
            error: __rt::Some(&[__rt::Key("data"), __rt::Key("message")]),
        },
    };
    /// The `VolcTts` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct VolcTts {
        config: VolcTtsConfig,
        client: VolcTtsClient,
    }
    impl VolcTts {
        /// The integration with the given settings.
        pub fn new(config: VolcTtsConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let client = VolcTtsClient::new(&config)?;
            __rt::Ok(VolcTts { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            Self::new(VolcTtsConfig::from_env()?)
        }
        /// The integration, sending through `client`, a `reqwest::Client` you
        /// configured (proxies, root certificates, default headers); the spec's
        /// timeouts, size limits, auth and redirect rules still apply on top.
        /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
        /// that follows redirects itself bypasses the spec's redirect rules (the
        /// request then fails, but has been sent on). Its own connect timeout
        /// applies instead of the spec's.
        ///
        /// `VolcTts::from_env()?.with_reqwest_client(client)`
        #[must_use]
        pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
            self.client = self.client.with_reqwest_client(client);
            self
        }
        /// The typed client, for direct calls.
        pub fn client(&self) -> &VolcTtsClient {
            &self.client
        }
        /// The settings.
        pub fn config(&self) -> &VolcTtsConfig {
            &self.config
        }
        /// Static facts about the integration: endpoints, policies, polling, webhook.
        pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl __rt::Generated for VolcTts {
        const GLUE: &'static __rt::Glue = &__rt::Glue {
            descriptor: &__DESCRIPTOR,
            calls: &[__rt::CallGlue::new::<Synthesis, ()>(&__ENDPOINT_SYNTHESIZE)],
            poll: __rt::Some(__rt::PollGlue::new::<Audio>(&__ENDPOINT_QUERY)),
            webhook: __rt::Some(__rt::WebhookGlue::new::<Audio>(&__WEBHOOK_REPLY)),
        };
        fn http(&self) -> &__rt::HttpClient {
            &self.client.http
        }
        fn webhook_secret(&self) -> __rt::Option<__rt::Secret> {
            __rt::Some(self.config.webhook_secret.clone())
        }
    }
    static __WEBHOOK_REPLY: __rt::ReplySpec = __rt::ReplySpec {
        endpoint: "webhook",
        status: __rt::Some(__rt::StatusSpec {
            path: &[__rt::Key("state")],
            map: &[
                ("running", __rt::RemoteStatus::Processing),
                ("done", __rt::RemoteStatus::Completed),
                ("error", __rt::RemoteStatus::Failed),
            ],
        }),
        external_id: __rt::ExternalIdSpec::Optional(&[__rt::Key("task_id")]),
        result: __rt::Some(
            &[
                ("url", &[__rt::Key("audio_url")]),
                ("duration_ms", &[__rt::Key("duration")]),
            ],
        ),
        error: __rt::Some(&[__rt::Key("message")]),
    };
    const __POLICY: __rt::PolicyDescriptor = __rt::PolicyDescriptor {
        timeout_ms: 10000u64,
        retry: __rt::RetryPolicy {
            max_attempts: 5u32,
            ..__rt::RetryPolicy::SPEC_DEFAULT
        },
        circuit_breaker: __rt::Some(__rt::CircuitBreakerPolicy {
            failure_threshold: 5u32,
            open_for_ms: 30000u64,
            half_open_probes: 1u32,
            scope: __rt::PolicyScope::Integration,
        }),
        rate_limit: __rt::Some(__rt::RateLimitPolicy {
            per_second: 20f64,
            burst: 40u32,
            scope: __rt::PolicyScope::Integration,
        }),
        concurrency: __rt::Some(32u32),
        ..__rt::PolicyDescriptor::DEFAULT
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
        name: "VolcTts",
        module: "volc_tts",
        endpoints: &[
            __rt::EndpointDescriptor {
                mode: __rt::Mode::Async,
                starts_calls: true,
                idempotent: false,
                idempotency_key: __rt::Some(
                    __rt::IdempotencyKeyPlacement::Header("X-Idempotency-Key"),
                ),
                request_fields: __rt::RequestFields {
                    all: &["text", "voice", "speed", "format"],
                    path: &[],
                    headers: &[],
                },
                give_up_after_s: __rt::Some(600u64),
                ..__rt::EndpointDescriptor::new(
                    "synthesize",
                    "POST",
                    "/api/v1/tts/tasks",
                    __POLICY,
                )
            },
            __rt::EndpointDescriptor::new(
                "query",
                "GET",
                "/api/v1/tts/tasks/{external_id}",
                __POLICY,
            ),
        ],
        policy: __POLICY,
        polling: __rt::Some(__rt::PollingDescriptor {
            endpoint: "query",
            interval_ms: 2000u64,
            backoff: 1.5f64,
            max_interval_ms: 30000u64,
            give_up_after_s: 600u64,
        }),
        webhook: __rt::Some(__rt::WebhookDescriptor {
            path: "/webhooks/volc-tts",
            scheme: __rt::SignatureScheme::StandardWebhooks,
            secret_env: "VOLC_TTS_WEBHOOK_SECRET",
            tolerance_s: 300u64,
            max_body_bytes: 1048576usize,
        }),
        fingerprint: "fnv1a64:f9ee9b13871d1eeb",
    };
}
