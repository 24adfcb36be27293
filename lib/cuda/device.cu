/*
 * device.cu - CUDA presence query. The kernels of the cuda backend live
 * one mechanism per file (softmax.cu, mla.cu, deltanet.cu, lightning.cu),
 * with shared pieces and the buffer helpers in util.cu.
 */
#include <cuda_runtime.h>

extern "C" int lcai_cuda_device_count(void)
{
	int n = 0;

	/* No driver or no device both read as "no device": the library must
	 * build and run on machines with the toolkit but no GPU. */
	if (cudaGetDeviceCount(&n) != cudaSuccess) {
		(void)cudaGetLastError();
		return 0;
	}
	return n;
}
