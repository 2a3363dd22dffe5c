// Why a session may not start, in words (GET /api/keys/{id}/devices "reason").
export const REASONS = {
  user_inactive: 'Your user account is inactive.',
  key_inactive: 'This SSH key is inactive.',
  device_inactive: 'This device is inactive.',
  key_not_associated: 'This key is not associated with this device.',
  no_group: 'You are not a member of any access group.',
  no_use_credentials: 'None of your access groups allows using credentials.',
  no_access_devices: 'None of your access groups allows access to devices.',
  no_remote_session: 'None of your access groups allows remote sessions.',
  key_not_granted: 'None of your access groups grants this SSH key.',
  device_not_granted: 'None of your access groups grants this device.',
  not_granted_together: 'No single access group of yours grants both this key and this device.',
};

export function reasonText(r) {
  return REASONS[r] || `Not allowed (${r}).`;
}
