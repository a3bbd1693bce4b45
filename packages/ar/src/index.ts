// @ibq/ar: the class-conditional autoregressive transformer, trainer and sampler (see README.md); not written yet.
export {};
