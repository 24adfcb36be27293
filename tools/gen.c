/* gen.c - placeholder */
#include "tool.h"
