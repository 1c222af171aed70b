/* config.h — what trace/ may ask of the configuration. */
#ifndef HAK_CONFIG_H
#define HAK_CONFIG_H
#include <stddef.h>
/* "NAME=VALUE\n" lines of every HAKMEM_* setting in force; returns length. */
__attribute__((visibility("default"))) size_t _hak_config_describe(char *buf, size_t n);
#endif
