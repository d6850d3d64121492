#!/bin/sh
# dracut initqueue/settled hook of dmce (sourced by the initqueue): assembles the
# targets of /etc/dmce/targets once their devices are there (each settled round
# tries again, without waiting); stops the boot with the checker's findings and a
# rescue shell when one cannot be assembled.
type emergency_shell >/dev/null 2>&1 || . /lib/dracut-lib.sh

dmce_settled() {
    [ -r /etc/dmce/targets ] || return 0
    [ -e /run/dmce/done ] && return 0
    modprobe -q dm-clone 2>/dev/null
    modprobe -q dm-era 2>/dev/null
    mkdir -p /run/dmce
    /sbin/dmce-assemble -w 0 2>/run/dmce/messages
    _dmce_rc=$?
    cat /run/dmce/messages >&2
    if [ $_dmce_rc -eq 0 ]; then
        : >/run/dmce/done
    elif [ $_dmce_rc -eq 1 ] && grep -q ": no device" /run/dmce/messages; then
        : # a device is not there yet: the next settled round tries again
    else
        : >/run/dmce/done
        emergency_shell -n dmce "dmce: a dm-clone / dm-era target of /etc/dmce/targets could not be assembled (see above); the boot stops here."
    fi
}
dmce_settled
