/*
 * device.cu - CUDA presence query; the only CUDA code so far. The kernels
 * of the cuda backend arrive in their own files (one per mechanism).
 */
#include <cuda_runtime.h>

extern "C" int lcai_cuda_device_count(void)
{
	int n = 0;

	/* No driver or no device both read as "no device": the library must
	 * build and run on machines with the toolkit but no GPU. */
	if (cudaGetDeviceCount(&n) != cudaSuccess)
		return 0;
	return n;
}
