/** User namespaces (user_namespaces(7)): what the kernel takes in /proc/PID/uid_map and gid_map. */

/**
 * One line of a uid_map or gid_map: `count` ids from `namespaceId` inside the namespace are the ids
 * from `hostId` in the parent namespace (the rootless mode's --uid-map/--gid-map, one range each).
 */
export interface IdMapRange {
  namespaceId: number;
  hostId: number;
  count: number;
}
