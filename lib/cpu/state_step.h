/*
 * state_step.h - one token of Gated DeltaNet or Lightning attention on
 * one head's state [dk][dv], the kernels of decode-sized calls
 * (state_step.c), picked per element type for the widest ISA the CPU
 * runs (isa.h).
 *
 * Both read S0 and write S (S0 may be S, never overlapping it
 * otherwise), row i of either at i dv, and write o [dv]:
 *   dn   S = e S0 + k u^T, u = beta (v - e S0^T k), o = S^T q,
 *        where k and q are the tensors' vectors times kf and qf
 *   lt   S = lambda S0 + k v^T, o = scale S^T q
 */
#ifndef LCA_CPU_STATE_STEP_H
#define LCA_CPU_STATE_STEP_H

#include <stdint.h>

struct lcai_step_f32 {
	void (*dn)(const float *S0, float *S, int64_t dk, int64_t dv,
		const float *q, float qf, const float *k, float kf,
		const float *v, double e, double beta, float *o);
	void (*lt)(const float *S0, float *S, int64_t dk, int64_t dv,
		const float *q, const float *k, const float *v, double lambda,
		float scale, float *o);
};

struct lcai_step_f64 {
	void (*dn)(const double *S0, double *S, int64_t dk, int64_t dv,
		const double *q, double qf, const double *k, double kf,
		const double *v, double e, double beta, double *o);
	void (*lt)(const double *S0, double *S, int64_t dk, int64_t dv,
		const double *q, const double *k, const double *v,
		double lambda, double scale, double *o);
};

const struct lcai_step_f32 *lcai_step_f32(void);
const struct lcai_step_f64 *lcai_step_f64(void);

#endif
